"""A Setitec file opened in Excel and saved as a real binary .xls reads like the original."""

from __future__ import annotations

import numpy as np
import xlwt

from uos.holes import read_source
from uos.holes.setitec import to_number

NAME = "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls"


def _resave_as_excel(text_file, target) -> None:
    """What Excel does with a comma-decimal locale: numbers become numeric cells, the rest text."""
    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    lines = text_file.read_bytes().decode("latin-1").split("\n")
    row = 0
    for line in lines:
        for col, cell in enumerate(line.rstrip("\r").split("\t")):
            cell = cell.strip()
            if not cell:
                continue
            number = to_number(cell)
            sheet.write(
                row,
                col,
                number if number is not None and np.isfinite(number) and cell[0] in "-0123456789" else cell,
            )
        row += 1
        if row >= 65536:  # the BIFF8 row limit; keep a file that fits
            break
    book.save(str(target))


def test_binary_excel_is_detected_and_read(tmp_path, setitec_dir):
    original = read_source(setitec_dir / NAME)
    resaved = tmp_path / "resaved.xls"
    _resave_as_excel(setitec_dir / NAME, resaved)
    assert resaved.read_bytes()[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

    hole = read_source(resaved)
    assert hole.meta["source_kind"] == "setitec-xls"
    for key in (
        "hole_id",
        "format_version",
        "date",
        "head_tag",
        "global_counter",
        "tool_age",
        "controller_sn",
        "cutting_tool",
    ):
        assert hole.meta[key] == original.meta[key], key
    assert hole.program == original.program
    assert hole.step_results == original.step_results
    assert list(hole.signals) == list(original.signals)
    for column, values in original.signals.items():
        np.testing.assert_array_equal(hole.signals[column], values, err_msg=column)
