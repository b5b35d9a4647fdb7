"""The one way a hole becomes an answer: gate -> features -> network -> decode -> refine ->
confidence -> review.

Out-of-fold evaluation in `uos train`, `uos predict`, `uos serve` and the registered MLflow model
all call `answer_holes`, so that the figures measured in cross-validation are those of the path
that serves. A hole the gate refuses (`quality.answerability`) gets an error and nothing else;
every other hole gets its keypoints, a confidence per keypoint and a status: `ok`, or `review`
with the reasons a person should look at it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import maximum_filter1d

from uos.holes.profile import Profile, build_profile
from uos.holes.quality import QualityRules, unanswerable
from uos.labels import KEYPOINTS
from uos.labels.cutting import CuttingRule, CuttingState, air_baseline
from uos.training.features import GRID_MM, MAX_DEPTH_MM, N_BINS, profile_features, recorded_bins

RULE_SLACK_MM = 0.3  # the network may put a keypoint this far from where the cutting rule allows
GRIP_STEP_MM = 25.4 / 16  # fasteners come in grip lengths of 1/16 inch
SUMMARY_NAMES = ("start_mm", "end_mm", "torque_peak_a", "thrust_peak_a")
SUMMARY_TEXT = {
    "start_mm": "recording starts at {:.1f} mm",
    "end_mm": "recording ends at {:.1f} mm",
    "torque_peak_a": "torque peaks at {:.1f} A",
    "thrust_peak_a": "thrust peaks at {:.2f} A",
}


@dataclass(frozen=True)
class Context:
    """What is known of a hole besides its signals (nothing, for a bare pyfunc call)."""

    family: str | None = None  # program family (`folds.program_family`)
    unit: str | None = None  # the drilling head it was drilled with


@dataclass
class Known:
    """What training saw: the review flags holes unlike it."""

    families: dict[str, int] = field(default_factory=dict)  # program family -> training holes
    units: dict[str, int] = field(default_factory=dict)  # unit (head) -> training holes
    ranges: dict[str, list[float]] = field(default_factory=dict)  # summary name -> [low, high]
    thickness_mm: list[float] | None = None

    @classmethod
    def of(cls, contexts: Sequence[Context], summaries: Sequence[dict[str, float]], thickness: np.ndarray) -> Known:
        ranges = {}
        for name in SUMMARY_NAMES:
            values = [s[name] for s in summaries if name in s]
            if values:
                ranges[name] = [round(float(min(values)), 4), round(float(max(values)), 4)]
        thickness = thickness[np.isfinite(thickness)]
        families = Counter(c.family for c in contexts if c.family and c.family != "unknown")
        units = Counter(c.unit for c in contexts if c.unit)
        return cls(
            dict(sorted(families.items())),
            dict(sorted(units.items())),
            ranges,
            [round(float(thickness.min()), 3), round(float(thickness.max()), 3)] if len(thickness) else None,
        )


@dataclass
class ModelConfig:
    """Everything beside the weights that makes a hole an answer (config.json of a model)."""

    net: dict[str, int]  # NetConfig
    train: dict[str, Any]  # the whole [train] table it was trained with
    gate: QualityRules = field(default_factory=QualityRules)
    rule: CuttingRule = field(default_factory=CuttingRule)
    known: Known = field(default_factory=Known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(
            data["net"],
            data["train"],
            QualityRules(**data.get("gate", {})),
            CuttingRule(**data.get("rule", {})),
            Known(**data.get("known", {})),
        )

    def setting(self, name: str, default: Any) -> Any:
        return self.train.get(name, default)


@dataclass
class Prepared:
    """One hole, ready for the network."""

    profile: Profile
    state: CuttingState
    features: np.ndarray  # (channels, bins)
    allowed: np.ndarray  # (3, bins): where each keypoint may lie
    summary: dict[str, float]


OUTPUT_COLUMNS = (  # the numbers of an answer (`Answer.record`)
    "entry_mm",
    "transition_mm",
    "exit_mm",
    "top_layer_mm",
    "bottom_layer_mm",
    "thickness_mm",
    "entry_confidence",
    "transition_confidence",
    "exit_confidence",
)


@dataclass
class Answer:
    """One hole's answer."""

    positions: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # mm, NaN: none
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(3))
    status: str = "error"  # ok | review | error
    reasons: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def thickness_mm(self) -> float:
        return float(self.positions[2] - self.positions[0])

    def record(self) -> dict[str, Any]:
        """The fields of a `uos predict` line and of a `uos serve` answer."""
        entry, transition, exit_ = (_number(v) for v in self.positions)
        thickness = _number(self.thickness_mm)
        record: dict[str, Any] = {"entry_mm": entry, "transition_mm": transition, "exit_mm": exit_}
        record["top_layer_mm"] = _difference(entry, transition)
        record["bottom_layer_mm"] = _difference(transition, exit_)
        record["thickness_mm"] = thickness
        # A grip code picks a fastener: only for an answer nobody needs to check.
        record["grip_code"] = grip_code(thickness) if self.status == "ok" else None
        for name, value in zip(KEYPOINTS, self.confidence, strict=True):
            record[f"{name}_confidence"] = None if self.error else round(float(value), 3)
        record["status"] = self.status
        record["review_reasons"] = list(self.reasons)
        record["error"] = self.error
        return record


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def _difference(top: float | None, bottom: float | None) -> float | None:
    return None if top is None or bottom is None else round(bottom - top, 3)


def grip_code(thickness_mm: float | None) -> int | None:
    """The stack thickness in 1/16 inch steps, rounded up (the fastener's grip length)."""
    if thickness_mm is None or thickness_mm <= 0:
        return None
    return math.ceil(thickness_mm / GRIP_STEP_MM - 1e-9)


def summarize(profile: Profile, state: CuttingState) -> dict[str, float]:
    """A few figures of a hole, to tell whether it is like the holes trained on (the profile is
    smoothed over 0.1 mm: its maxima are levels, not spikes)."""
    return {
        "start_mm": float(profile.depth[0]),
        "end_mm": float(profile.depth[-1]),
        "torque_peak_a": float(profile.torque.max() - state.baseline_a),
        "thrust_peak_a": float(profile.thrust.max() - air_baseline(profile, "thrust")),
    }


def allowed_bins(profile: Profile, state: CuttingState) -> np.ndarray:
    """(3, bins): for each keypoint, the grid bins inside the recording within RULE_SLACK_MM of a
    place where the cutting rule allows it."""
    bins = np.clip(np.floor(profile.depth / GRID_MM).astype(np.int64), 0, N_BINS - 1)
    marks = np.zeros((len(KEYPOINTS), N_BINS), dtype=bool)
    for row, name in enumerate(KEYPOINTS):
        marks[row, bins[state.allowed(name)]] = True
    slack = round(RULE_SLACK_MM / GRID_MM)
    return maximum_filter1d(marks, size=2 * slack + 1, axis=-1) & recorded_bins(profile)


def prepare(signals: tuple[np.ndarray, np.ndarray, np.ndarray], config: ModelConfig) -> Prepared | str:
    """The hole's features and where its keypoints may lie, or why it cannot be answered."""
    try:
        depth, torque, thrust = (np.asarray(s, dtype=np.float64) for s in signals)
    except (TypeError, ValueError) as exc:
        return f"signals are not arrays of numbers: {exc}"
    if depth.ndim != 1 or torque.ndim != 1 or thrust.ndim != 1:
        return f"signals must be one-dimensional arrays (got {depth.ndim}, {torque.ndim} and {thrust.ndim} dimensions)"
    if len(depth) != len(torque) or len(depth) != len(thrust):
        return f"signals of unequal length: depth {len(depth)}, torque {len(torque)}, thrust {len(thrust)}"
    if reason := unanswerable({"depth_mm": depth, "torque_a": torque, "thrust_a": thrust}, config.gate):
        return reason
    profile = build_profile(depth, torque, thrust)
    if profile is None:
        return "too little fresh travel to measure"
    state = CuttingState.of(profile, config.rule)
    return Prepared(profile, state, profile_features(profile), allowed_bins(profile, state), summarize(profile, state))


# --- the network, decoding and refinement --------------------------------------------------------


def run_network(net, features: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (holes, 3, bins) and presence logits (holes, 3), from a torch DepthNet or a
    `runtimes` network (PyTorch or ONNX Runtime)."""
    from uos.training.runtimes import as_network

    network = as_network(net)
    heatmaps, presence = [], []
    for start in range(0, len(features), batch):
        h, p = network.run(features[start : start + batch])
        heatmaps.append(h)
        presence.append(p)
    return np.concatenate(heatmaps), np.concatenate(presence)


# Windows (mm before, mm after the network's position) in which a ramp is fitted where the
# detector disagrees with the network. The fit moves a little with its window, so the refined
# point is the median over several of them.
REFINE_WINDOWS_MM = ((2.0, 2.0), (2.5, 2.5), (3.0, 3.0))
AGREE_MM = 0.5  # the labels' detector within this of the network: its depth is taken
REACH_MM = 1.0  # a ramp fitted further than this from the network's position is another edge


def refine(positions: np.ndarray, prepared: Prepared) -> list[str]:
    """The network decides which edge, the labels' own ramp fit where exactly it starts; moves
    `positions` in place and returns, for review, the keypoints where the two disagree.

    Where the signal-only detector of `uos label` found the point within AGREE_MM of the
    network's, its depth is taken (the same fit, in the same window, as the labels). Elsewhere
    the ramp is fitted around the network's position (median over REFINE_WINDOWS_MM of the fits
    within REACH_MM); where none is found, the network's position stays and is worth a look, as
    is an answer further than REACH_MM from where the detector found the point (two edges, each
    taken by one of them). A refined position that breaks the cutting rule is not taken."""
    from uos.labels.detect import detect
    from uos.labels.edges import fit_ramp

    profile, state = prepared.profile, prepared.state
    detected = detect(profile, state=state).points
    network = positions.copy()
    disagree = []
    for index, name in enumerate(KEYPOINTS):
        at = network[index]
        if not np.isfinite(at):
            continue
        alone = detected[name].depth_mm
        found = [alone] if alone is not None and abs(alone - at) <= AGREE_MM else []
        if not found:
            # Bounded by the neighbouring keypoints, so that a window never takes in another edge.
            floor = max([-np.inf, *[network[j] + 0.3 for j in range(index) if np.isfinite(network[j])]])
            ceiling = min([np.inf, *[network[j] - 0.3 for j in range(index + 1, 3) if np.isfinite(network[j])]])
            for before, after in REFINE_WINDOWS_MM:
                edge = fit_ramp(profile, max(at - before, floor), min(at + after, ceiling), rising=name != "exit")
                if edge is not None and abs(edge.depth_mm - at) <= REACH_MM:
                    found.append(edge.depth_mm)
        refined = float(np.median(found)) if found else None
        if refined is None:
            disagree.append(
                f"network and ramp fit disagree on the {name}: no torque ramp within {REACH_MM:g} mm of {at:.2f} mm"
            )
        elif (why := state.check(name, refined)) is not None:
            disagree.append(
                f"network and ramp fit disagree on the {name}: the ramp at {refined:.2f} mm is no {name} ({why})"
            )
        else:
            positions[index] = refined
        if alone is not None and abs(alone - positions[index]) > REACH_MM:
            disagree.append(
                f"the answer and the labels' detector disagree on the {name}: {positions[index]:.2f} vs {alone:.2f} mm"
            )
    return disagree


# --- review ----------------------------------------------------------------------------------------


def _geometry_reasons(positions: np.ndarray, config: ModelConfig) -> list[str]:
    """Keypoints in order, layers no thinner than a layer can be, a thickness training has seen."""
    entry, transition, exit_ = positions
    reasons = []
    missing = [name for name, value in (("entry", entry), ("exit", exit_)) if not np.isfinite(value)]
    if missing:
        reasons.append(f"no {' and no '.join(missing)}: no thickness")
    min_layer = float(config.setting("min_layer_mm", 1.0))
    present = positions[np.isfinite(positions)]
    if np.any(np.diff(present) <= 0):
        reasons.append("keypoints out of depth order")
    elif np.isfinite(transition):
        for layer, top, bottom in (("top", entry, transition), ("bottom", transition, exit_)):
            if np.isfinite(top) and np.isfinite(bottom) and bottom - top < min_layer - 1e-6:
                reasons.append(f"{layer} layer {bottom - top:.2f} mm: thinner than {min_layer:g} mm")
    known = config.known.thickness_mm
    if known and np.isfinite(entry) and np.isfinite(exit_):
        margin = max(float(config.setting("review_range_margin", 0.1)) * (known[1] - known[0]), 1.0)
        if not known[0] - margin <= exit_ - entry <= known[1] + margin:
            reasons.append(f"thickness {exit_ - entry:.2f} mm unlike training ({known[0]:.1f}-{known[1]:.1f} mm)")
    return reasons


def _novelty_reasons(prepared: Prepared, context: Context, config: ModelConfig) -> list[str]:
    """The hole is unlike what the model was trained on: a program family or unit it saw fewer
    than `review_min_support` times, figures outside the training range, a recording longer than
    the network sees."""
    known, reasons = config.known, []
    support = int(config.setting("review_min_support", 20))
    for kind, value, seen, check in (
        ("program family", context.family, known.families, "review_unknown_family"),
        ("unit (head)", context.unit, known.units, "review_unknown_unit"),
    ):
        if not config.setting(check, True) or not seen or value in (None, "unknown"):
            continue
        if seen.get(value, 0) < support:
            times = f"only {seen[value]} hole{'s' if seen[value] != 1 else ''}" if value in seen else "not seen"
            reasons.append(f"{kind} {value}: {times} in training")
    share = float(config.setting("review_range_margin", 0.1))
    for name, (low, high) in known.ranges.items():
        value, margin = prepared.summary[name], share * max(high - low, abs(high) * 0.1, 0.1)
        if not low - margin <= value <= high + margin:
            reasons.append(f"{SUMMARY_TEXT[name].format(value)}: outside training ({low:.2f} to {high:.2f})")
    if prepared.profile.depth[-1] > MAX_DEPTH_MM:
        reasons.append(f"the recording goes beyond the {MAX_DEPTH_MM:g} mm the model sees")
    return reasons


def review(answer: Answer, decoded, row: int, prepared: Prepared, context: Context, config: ModelConfig) -> list[str]:
    """Why a person should look at this answer (empty: it can be used as it is)."""
    threshold = float(config.setting("review_confidence", 0.8))
    reasons = []
    for j, name in enumerate(KEYPOINTS):
        if decoded.unlocated[row, j]:
            reasons.append(f"{name}: the network puts it where the torque changes no cutting state")
        elif answer.confidence[j] < threshold:
            kind = "" if np.isfinite(answer.positions[j]) else " that there is none"
            reasons.append(f"{name} not sure enough{kind} (confidence {answer.confidence[j]:.2f} < {threshold:g})")
    if decoded.unordered[row]:
        reasons.append("no choice of keypoints in depth order fits the torque")
    for name, at in zip(KEYPOINTS, answer.positions, strict=True):
        if np.isfinite(at) and _off_the_rule(prepared, name, at) > RULE_SLACK_MM + GRID_MM / 2:
            reasons.append(f"{name} at {at:.2f} mm: {prepared.state.check(name, at)}")
    return reasons + _geometry_reasons(answer.positions, config) + _novelty_reasons(prepared, context, config)


def _off_the_rule(prepared: Prepared, name: str, at: float) -> float:
    """How far `at` is from the nearest depth where the cutting rule allows keypoint `name`."""
    depth = prepared.profile.depth[prepared.state.allowed(name)]
    return float(np.min(np.abs(depth - at))) if len(depth) else np.inf


# --- the whole path ----------------------------------------------------------------------------------


def answer_prepared(
    net,
    config: ModelConfig,
    prepared: Sequence[Prepared | str],
    contexts: Sequence[Context] | None = None,
    refine_positions: bool | None = None,
) -> list[Answer]:
    """Answers for holes already through `prepare` (a string: the gate's reason)."""
    from uos.training.decode import decode

    contexts = contexts or [Context()] * len(prepared)
    do_refine = bool(config.setting("refine", True)) if refine_positions is None else refine_positions
    answers = [Answer(error=p) if isinstance(p, str) else Answer() for p in prepared]
    ready = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
    if not ready:
        return answers
    heatmaps, presence = run_network(net, np.stack([prepared[i].features for i in ready]))
    allowed = np.stack([prepared[i].allowed for i in ready])
    decoded = decode(heatmaps, presence, float(config.setting("min_layer_mm", 1.0)), allowed=allowed)
    for row, i in enumerate(ready):
        answer, hole = answers[i], prepared[i]
        answer.positions = decoded.positions[row].copy()
        answer.confidence = decoded.confidence[row]
        disagree = refine(answer.positions, hole) if do_refine else []
        answer.reasons = disagree + review(answer, decoded, row, hole, contexts[i], config)
        answer.status = "review" if answer.reasons else "ok"
    return answers


def answer_holes(
    net,
    config: ModelConfig,
    signals: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    contexts: Sequence[Context] | None = None,
    refine_positions: bool | None = None,
) -> list[Answer]:
    """One answer per hole, from its raw (depth, torque, thrust) arrays."""
    return answer_prepared(net, config, [prepare(s, config) for s in signals], contexts, refine_positions)


def context_of(hole) -> Context:
    """A hole's program family and unit, from its metadata (None where it carries none)."""
    from uos.training.folds import program_family

    return Context(program_family(hole.program) if hole.program else None, hole.meta.get("head_id"))
