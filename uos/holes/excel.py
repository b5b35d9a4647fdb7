"""Setitec files someone opened in Excel and saved as a real binary `.xls` (BIFF, read by xlrd)."""

from __future__ import annotations

import os
import struct

from uos.errors import InputError
from uos.holes.record import Hole
from uos.holes.setitec import attach_signals, hole_from_rows, read_signal_table

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _damaged_file_errors() -> tuple[type[BaseException], ...]:
    """What xlrd raises on a damaged workbook: its own errors, and whatever its record decoder
    hits on bytes that are not what they claim (seen by damaging real re-saves)."""
    import xlrd
    from xlrd.compdoc import CompDocError

    return (xlrd.XLRDError, CompDocError, struct.error, IndexError, KeyError, ValueError, AssertionError, EOFError)


def _why(exc: BaseException) -> str:
    """xlrd's own errors say what is wrong in a workbook's terms; the rest are its decoder
    tripping over bytes that are not what they claim (an index, an assertion): a damaged file."""
    import xlrd
    from xlrd.compdoc import CompDocError

    if isinstance(exc, xlrd.XLRDError | CompDocError) and str(exc):
        return str(exc)
    return "its records are damaged"


def is_binary_excel(raw: bytes) -> bool:
    return raw.startswith(OLE2_MAGIC)


def _cell_text(cell, datemode: int) -> str:
    import xlrd

    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return ""
    if cell.ctype == xlrd.XL_CELL_NUMBER:
        value = float(cell.value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return "TRUE" if cell.value else "FALSE"
    if cell.ctype == xlrd.XL_CELL_DATE:
        moment = xlrd.xldate_as_datetime(cell.value, datemode)
        return moment.strftime("%d/%m/%Y") if moment.time().isoformat() == "00:00:00" else moment.isoformat()
    return str(cell.value).replace("\x00", "").strip()


def parse_binary_excel(raw: bytes, source: str) -> Hole:
    """Read the first sheet as the rows of a Setitec text file would be read."""
    import xlrd

    try:
        # xlrd writes its complaints about a damaged file to stdout unless given a log file.
        with open(os.devnull, "w") as quiet:
            book = xlrd.open_workbook(file_contents=raw, on_demand=True, logfile=quiet)
            sheet = book.sheet_by_index(0)
            rows = [[_cell_text(c, book.datemode) for c in sheet.row(r)] for r in range(sheet.nrows)]
    except _damaged_file_errors() as exc:
        raise InputError(f"binary Excel file that xlrd cannot read ({_why(exc)})", source) from None
    start = next((i for i, row in enumerate(rows) if row and row[0].strip() == "Position (mm)"), None)
    if start is None:
        raise InputError("Excel file without a Datas table (no row starting with 'Position (mm)')", source)
    hole = hole_from_rows(rows[:start], source)
    # The signal rows go through the same table reader as text files, as TAB-separated lines.
    table = "\n".join("\t".join(row) for row in rows[start:]).encode("latin-1", errors="replace")
    header, signals, issues = read_signal_table(table, source)
    attach_signals(hole, header, signals, issues)
    return hole
