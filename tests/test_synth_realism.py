"""Synthetic holes look like real ones: statistics of each program family fall inside the range
of the real files of the same family (setitec/mql for torque-triggered, setitec/tuhh P1 for
stroke-triggered), measured the same way on both (tests/realism.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from realism import stats_of
from uos.holes import read_source
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.synth.truth import read_truth

CHECKED = {
    "production": [
        "n_samples",
        "back_step_mm",
        "code_rows_first_step",
        "trailing_rows_first_step",
        "codes",
        "air_torque_median_a",
        "air_torque_std_a",
        "air_thrust_std_a",
        "cfrp_torque_a",
        "cfrp_thrust_a",
        "cfrp_power_w",
        "step1_max_torque_a",
        "metal_torque_a",
        "metal_thrust_a",
        "metal_power_w",
        "metal_oscillation_std_a",
        "metal_oscillation_hz",
        "exit_event_after_last_1a_mm",
        "samples_per_mm_step1",
        "samples_per_mm_step2",
        "noload_torque_step1_a",
        "noload_torque_step2_a",
        "end_depth_mm",
        "final_thrust_a",
        "torque_on_grid",
    ],
    "lab": [
        "n_samples",
        "back_step_mm",
        "code_rows_first_step",
        "trailing_rows_first_step",
        "first_code",
        "layer1_torque_a",
        "layer1_thrust_a",
        "layer2_peak_torque_a",
        "layer2_peak_thrust_a",
        "smoothness_q",
        "samples_per_mm_step2",
        "samples_per_mm_step3",
        "noload_torque_step2_a",
        "noload_torque_step3_a",
        "entry50_mm",
        "torque_on_grid",
    ],
}


def _stats(paths) -> pd.DataFrame:
    rows = []
    for path in paths:
        kind, stats = stats_of(read_source(path))
        if kind:
            rows.append({"family": kind, "file": path.name, **stats})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def real(setitec_dir):
    paths = sorted((setitec_dir / "mql").glob("*.xls")) + sorted(setitec_dir.glob("tuhh/00[1-5]_V*/*.xls"))
    return _stats(paths)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth-realism")
    # The real production holes are CFRP over titanium: compare like with like.
    synthesize(out, dataclasses.replace(SynthParams(), holes=120, seed=21, metals=["ti"]))
    truth = read_truth(out / "truth.csv").set_index("file")
    frame = _stats(sorted(out.glob("*.xls")))
    frame = frame.join(truth[["kind"]], on="file")
    return frame[frame["kind"] == "normal"]


@pytest.mark.parametrize("family", ["production", "lab"])
def test_synthetic_statistics_fall_inside_the_real_range(real, synthetic, family):
    real_rows, synthetic_rows = (
        real[real["family"] == family],
        synthetic[synthetic["family"] == family],
    )
    assert len(real_rows) >= 80 and len(synthetic_rows) >= 30
    outside = []
    for column in CHECKED[family]:
        values = real_rows[column].dropna()
        low, high = np.percentile(values, 5), np.percentile(values, 95)
        tolerance = 0.02 * max(abs(low), abs(high), 1e-3)  # printed-digit rounding
        median = synthetic_rows[column].median()
        if not low - tolerance <= median <= high + tolerance:
            outside.append(f"{column}: synthetic median {median:.4g} outside real [{low:.4g}, {high:.4g}]")
        # Most synthetic holes, not only their median, look real.
        share = (
            synthetic_rows[column]
            .between(low - tolerance - 0.1 * (high - low), high + tolerance + 0.1 * (high - low))
            .mean()
        )
        if share < 0.8:
            outside.append(f"{column}: only {share:.0%} of synthetic holes inside the real range")
    assert outside == []
