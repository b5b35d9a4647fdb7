"""`uos train`: the depth model, cross-validated over the folds, then trained on every labelled hole.

A plain PyTorch loop (deterministic for a seed): heatmap cross-entropy against a Gaussian around
each labelled keypoint, weighted by the label's confidence, plus presence; null labels teach
presence only. Every run is tracked in MLflow (tracking.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from uos.errors import ConfigError
from uos.holes.quality import QualityRules
from uos.labels import KEYPOINTS
from uos.labels.cutting import CuttingRule
from uos.params import from_table
from uos.training.features import CHANNELS, GRID_MM, N_BINS
from uos.training.infer import Answer, Context, Known, ModelConfig, Prepared, answer_prepared, context_of, prepare
from uos.training.model import NetConfig


@dataclass(frozen=True)
class TrainParams:
    """`[train]` in params.toml; `[train.profiles.NAME]` tables override it (`uos train --profile`)."""

    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 0.002
    weight_decay: float = 0.0001
    width: int = 8
    levels: int = 3
    kernel: int = 5
    sigma_bins: float = 1.5  # width of the target around a keypoint, in grid bins
    shift_mm: float = 2.0  # augmentation: random shift along depth
    gain: float = 0.3  # augmentation: torque and thrust scaled by up to +/- this share
    confidence_weight: bool = True  # weight each label by its confidence
    min_confidence: float = 0.0  # labels less sure than this are left out
    refine: bool = True  # move predictions to the start of the fitted ramp nearby
    min_layer_mm: float = 1.0  # keypoints are decoded in depth order, at least this far apart
    seed: int = 0
    workers: int = 0  # processes training the folds and the final model side by side; 0: our share of the cores
    review_confidence: float = 0.8  # a keypoint (or its absence) less sure than this: status review
    review_range_margin: float = 0.1  # a hole's figures further outside the training range (share of it): review
    review_unknown_family: bool = True  # a program family training saw fewer than review_min_support times: review
    review_unknown_unit: bool = True  # a unit (head) training saw fewer than review_min_support times: review
    review_min_support: int = 20  # holes of a family or unit the model must have trained on to answer for it
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    RETIRED: ClassVar[dict[str, str]] = {
        "threads": "the folds now train side by side in worker processes of one torch thread each "
        "(workers = 0: our share of the cores); remove it"
    }

    def with_profile(self, name: str | None) -> TrainParams:
        if not name:
            return self
        if name not in self.profiles:
            raise ConfigError(
                f"[train.profiles.{name}] not in params.toml (profiles: {', '.join(self.profiles) or 'none'})"
            )
        table = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | self.profiles[name]
        return from_table(TrainParams, table, f"[train.profiles.{name}]")

    def net(self) -> NetConfig:
        return NetConfig(width=self.width, levels=self.levels, kernel=self.kernel)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"[train] workers must be 0 (our share of the cores) or more, not {self.workers}")

    def table(self) -> dict[str, Any]:
        """The [train] table in effect (profile applied) that makes the model: not `workers`, which
        changes how fast, never what (the run's tag `workers` has it)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("profiles", "workers")
        }

    def model_config(
        self, gate: QualityRules | None = None, rule: CuttingRule | None = None, known: Known | None = None
    ) -> ModelConfig:
        return ModelConfig(
            self.net().to_dict(), self.table(), gate or QualityRules(), rule or CuttingRule(), known or Known()
        )


@dataclass
class Examples:
    """Model inputs and targets for a set of holes."""

    hole_ids: list[str]
    features: np.ndarray  # (holes, channels, bins)
    positions: np.ndarray  # (holes, 3) label depth in mm, NaN where the point does not exist
    weights: np.ndarray  # (holes, 3) label confidence (0: left out)
    prepared: list[Prepared]  # what the inference path needs besides the network
    contexts: list[Context]

    def subset(self, index: np.ndarray) -> Examples:
        return Examples(
            [self.hole_ids[i] for i in index],
            self.features[index],
            self.positions[index],
            self.weights[index],
            [self.prepared[i] for i in index],
            [self.contexts[i] for i in index],
        )

    def known(self) -> Known:
        """What these holes cover (families, units, ranges, thicknesses), for the review."""
        thickness = self.positions[:, 2] - self.positions[:, 0]
        return Known.of(self.contexts, [p.summary for p in self.prepared], thickness)


def build_examples(holes: list, labels, params: TrainParams, config: ModelConfig | None = None) -> Examples:
    """Features of every hole that has a labels row and passes the gate, with its keypoints and
    their weights (the labels' confidence; 0 for a keypoint the labeller could not place)."""
    config = config or params.model_config()
    rows = labels.set_index("hole_id")
    ids, prepared, contexts, positions, weights = [], [], [], [], []
    for hole in holes:
        if hole.hole_id not in rows.index:
            continue
        ready = prepare((hole.signals["depth_mm"], hole.signals["torque_a"], hole.signals["thrust_a"]), config)
        if isinstance(ready, str):
            continue  # the gate: no keypoints can be estimated, none learnt
        row = rows.loc[hole.hole_id]
        ids.append(hole.hole_id)
        prepared.append(ready)
        contexts.append(context_of(hole))
        positions.append([row[f"{k}_mm"] if row[f"{k}_mm"] is not None else np.nan for k in KEYPOINTS])
        confidence = np.array([row[f"{k}_confidence"] for k in KEYPOINTS], dtype=float)
        weight = confidence if params.confidence_weight else (confidence > 0).astype(float)
        weights.append(np.where(confidence >= params.min_confidence, weight, 0.0))
    features = (
        np.stack([p.features for p in prepared]) if prepared else np.zeros((0, len(CHANNELS), N_BINS), np.float32)
    )
    return Examples(
        ids,
        features,
        np.array(positions, dtype=float).reshape(-1, 3),
        np.array(weights, dtype=float).reshape(-1, 3),
        prepared,
        contexts,
    )


def _torch_setup(params: TrainParams):
    import torch

    torch.manual_seed(params.seed)
    # One thread: the same sums in the same order on any machine (the weights depend on the seed
    # only), and no thread pool whose threads wait for a descheduled one (see uos.cores).
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return torch


def _augment(torch, x, positions, generator, params: TrainParams):
    """Random gain on the level channels and a random shift along depth (targets shift along)."""
    x = x.clone()
    batch = x.shape[0]
    gain = 1.0 + params.gain * (2 * torch.rand((batch, 2, 1), generator=generator) - 1)
    x[:, 0:1] *= gain[:, 0:1]
    x[:, 1:2] *= gain[:, 1:2]
    limit = int(params.shift_mm / GRID_MM)
    shifted = torch.zeros_like(x)
    shifts = torch.randint(-limit, limit + 1, (batch,), generator=generator).tolist()
    for i, shift in enumerate(shifts):
        if shift >= 0:
            shifted[i, :, shift:] = x[i, :, : N_BINS - shift]
        else:
            shifted[i, :, :shift] = x[i, :, -shift:]
    return shifted, positions + torch.tensor(shifts, dtype=positions.dtype)[:, None] * GRID_MM


def _loss(torch, heatmaps, presence, positions, weights, sigma_bins: float):
    import torch.nn.functional as F

    present = ~torch.isnan(positions)
    grid = (torch.arange(N_BINS, dtype=heatmaps.dtype) + 0.5) * GRID_MM
    centre = torch.nan_to_num(positions, nan=0.0)[..., None]
    target = torch.exp(-0.5 * ((grid - centre) / (sigma_bins * GRID_MM)) ** 2)
    target = target / target.sum(dim=-1, keepdim=True).clamp_min(1e-9)
    log_probability = F.log_softmax(heatmaps, dim=-1)
    cross_entropy = -(target * log_probability).sum(dim=-1)  # (batch, 3)
    used = present & (weights > 0)
    position_loss = (cross_entropy * weights * used).sum() / (weights * used).sum().clamp_min(1e-9)
    presence_weight = (weights > 0).to(heatmaps.dtype)
    presence_loss = F.binary_cross_entropy_with_logits(
        presence, present.to(heatmaps.dtype), weight=presence_weight, reduction="sum"
    )
    presence_loss = presence_loss / presence_weight.sum().clamp_min(1.0)
    return position_loss + presence_loss


def fit(
    train: Examples,
    params: TrainParams,
    validation: Examples | None = None,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
):
    """Train a fresh network; returns it and the loss history [(epoch, train loss, validation loss)]."""
    torch = _torch_setup(params)
    from uos.training.model import DepthNet

    model = DepthNet(params.net())
    optimiser = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=params.learning_rate,
        total_steps=max(params.epochs * max(1, -(-len(train.hole_ids) // params.batch_size)), 1),
    )
    generator = torch.Generator().manual_seed(params.seed)
    x_all = torch.from_numpy(train.features)
    positions_all = torch.from_numpy(train.positions)
    weights_all = torch.from_numpy(train.weights)
    history = []
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(train.hole_ids), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            x, positions = _augment(torch, x_all[batch], positions_all[batch], generator, params)
            heatmaps, presence = model(x)
            loss = _loss(torch, heatmaps, presence, positions, weights_all[batch], params.sigma_bins)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        validation_loss = evaluate_loss(model, validation, params) if validation is not None else None
        history.append((epoch, total / max(count, 1), validation_loss))
        if on_epoch:
            on_epoch(epoch, total / max(count, 1), validation_loss)
    return model, history


def evaluate_loss(model, examples: Examples, params: TrainParams) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        heatmaps, presence = model(torch.from_numpy(examples.features))
        return float(
            _loss(
                torch,
                heatmaps,
                presence,
                torch.from_numpy(examples.positions),
                torch.from_numpy(examples.weights),
                params.sigma_bins,
            )
        )


def predict_examples(model, examples: Examples, config: ModelConfig, refine: bool | None = None) -> list[Answer]:
    """The answers of the inference path (`infer.answer_prepared`) for these holes."""
    return answer_prepared(model, config, examples.prepared, examples.contexts, refine)


def positions_of(answers: list[Answer]) -> np.ndarray:
    return np.array([a.positions for a in answers], dtype=float).reshape(-1, 3)


def errors(predicted: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """MAE per keypoint and for thickness (exit - entry) where both sides have the point; and how
    often presence disagrees."""
    result: dict[str, Any] = {}
    for i, name in enumerate(KEYPOINTS):
        both = np.isfinite(predicted[:, i]) & np.isfinite(expected[:, i])
        result[name] = float(np.mean(np.abs(predicted[both, i] - expected[both, i]))) if both.any() else None
        result[f"{name}_n"] = int(both.sum())
        result[f"{name}_presence_errors"] = int((np.isfinite(predicted[:, i]) != np.isfinite(expected[:, i])).sum())
    thick_p = predicted[:, 2] - predicted[:, 0]
    thick_e = expected[:, 2] - expected[:, 0]
    both = np.isfinite(thick_p) & np.isfinite(thick_e)
    result["thickness"] = float(np.mean(np.abs(thick_p[both] - thick_e[both]))) if both.any() else None
    result["thickness_n"] = int(both.sum())
    return result


def epoch_progress(
    progress: Callable[[str], None] | None, epochs: int, name: str = ""
) -> Callable[[int, float, float | None], None] | None:
    """A line on a quarter of the epochs: long runs show they are alive, short ones stay quiet.
    `name` (a fold, the final model) says whose epochs they are: folds train side by side."""
    if progress is None:
        return None
    every = max(epochs // 4, 1)
    started = time.perf_counter()
    whose = f"{name}, " if name else ""

    def on_epoch(epoch: int, train_loss: float, validation_loss: float | None) -> None:
        if epoch % every == 0 or epoch == epochs:
            validation = "" if validation_loss is None else f", validation {validation_loss:.3f}"
            progress(
                f"  {whose}epoch {epoch}/{epochs}: loss {train_loss:.3f}{validation} "
                f"({time.perf_counter() - started:.0f} s)"
            )

    return on_epoch


@dataclass
class FoldResult:
    """One fold trained and its held-out holes answered (`answers` as `uos predict`,
    `fast_answers` as `uos serve`: no refinement, no program family)."""

    fold: int
    test: np.ndarray  # the held-out holes' indices among the examples
    answers: list[Answer]
    fast_answers: list[Answer]
    history: list[tuple[int, float, float | None]]


@dataclass
class FinalModel:
    """The network trained on every labelled hole: its weights (as numpy arrays, so that they
    travel between processes as plain data) and loss history."""

    state: dict[str, np.ndarray]
    history: list[tuple[int, float, float | None]]

    def state_dict(self) -> dict[str, Any]:
        """The weights as torch tensors, as `DepthNet.state_dict()` gives them (for `torch.save`)."""
        import torch

        return {name: torch.from_numpy(array) for name, array in self.state.items()}


def train_fold(
    examples: Examples,
    folds: np.ndarray,
    fold: int,
    params: TrainParams,
    base: ModelConfig,
    progress: Callable[[str], None] | None = None,
) -> FoldResult:
    """Train on every fold but `fold`, then answer its held-out holes through the inference path,
    with what the training holes covered as `known` (a held-out family or unit is new to it)."""
    test, train = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
    name = f"fold {fold + 1}/{len(set(folds.tolist()))}"
    if progress:
        progress(f"{name}: training on {len(train)} holes, testing on {len(test)}")
    training, held_out = examples.subset(train), examples.subset(test)
    model, history = fit(training, params, held_out, on_epoch=epoch_progress(progress, params.epochs, name))
    config = dataclasses.replace(base, known=training.known())
    answers = predict_examples(model, held_out, config)
    # What `uos serve` answers: no refinement, and no program family (MQTT carries no program).
    over_mqtt = [dataclasses.replace(c, family=None) for c in held_out.contexts]
    fast = answer_prepared(model, config, held_out.prepared, over_mqtt, False)
    return FoldResult(fold, test, answers, fast, history)


def train_final(examples: Examples, params: TrainParams, progress: Callable[[str], None] | None = None) -> FinalModel:
    """The network trained on every labelled hole (what is registered)."""
    if progress:
        progress(f"final model: training on all {len(examples.hole_ids)} holes")
    model, history = fit(examples, params, on_epoch=epoch_progress(progress, params.epochs, "final model"))
    return FinalModel({k: v.detach().numpy().copy() for k, v in model.state_dict().items()}, history)


@dataclass
class CrossValidation:
    oof: np.ndarray  # out-of-fold positions (holes, 3)
    answers: list[Answer]  # out-of-fold answers, in the order of the examples
    fast_answers: list[Answer]  # as `uos serve` answers: no refinement, no program family
    fold_errors: list[dict[str, Any]]
    histories: list[list[tuple[int, float, float | None]]]
    seconds: float


def gather(examples: Examples, results: list[FoldResult], seconds: float) -> CrossValidation:
    """The folds' results (in fold order) as one cross-validation: every hole held out once."""
    oof = np.full(examples.positions.shape, np.nan)
    answers: list[Answer] = [None] * len(examples.hole_ids)  # every hole is held out once: all filled
    fast_answers: list[Answer] = [None] * len(examples.hole_ids)
    fold_errors = []
    for result in results:
        for index, answer, quick in zip(result.test, result.answers, result.fast_answers, strict=True):
            answers[index], fast_answers[index] = answer, quick
        oof[result.test] = positions_of(result.answers)
        fold_errors.append(fold_error(examples, result))
    return CrossValidation(oof, answers, fast_answers, fold_errors, [r.history for r in results], seconds)


def fold_error(examples: Examples, result: FoldResult) -> dict[str, Any]:
    """The fold's MAE per keypoint and thickness against the labels (its nested run's metrics)."""
    return errors(positions_of(result.answers), examples.positions[result.test])
