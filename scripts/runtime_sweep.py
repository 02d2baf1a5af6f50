"""Run every Distiller example schedule, unchanged, through the compression runtime.

For each example whose classes prunecli implements and whose target model is in the zoo, the
sweep builds the model (random weights) and an SGD optimizer, loads and resolves the schedule,
builds the scheduler and runs one tiny random batch per epoch from epoch 0 through the last
epoch of the last pruner, regularizer or extension (LR-only tails are not run). It then checks
that every pruner reached its final sparsity and that every thinning extension produced a
smaller model that still runs.

    .venv/bin/python scripts/runtime_sweep.py                 # print a table of every example
    .venv/bin/python scripts/runtime_sweep.py --write docs/compatibility-runtime.json
    .venv/bin/python scripts/runtime_sweep.py --only 'ssl/' --write docs/compatibility-runtime.json
    .venv/bin/python scripts/runtime_sweep.py --fingerprints tests/data/mask_fingerprints.json

The JSON it writes is what ``scripts/compatibility.py`` shows in the runtime column.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLES = Path(
    os.environ.get("PRUNECLI_EXAMPLES", REPO_ROOT.parent / "shared" / "distiller-examples")
)
DEFAULT_JSON = REPO_ROOT / "docs" / "compatibility-runtime.json"

#: Target model of each example, by pattern on its path (first match wins). A thinning
#: extension's ``arch`` argument, where present, takes precedence. Names follow INDEX.md.
MODEL_PATTERNS: tuple[tuple[str, str], ...] = (
    # the post-training examples name Distiller's ResNet modules (relu1, relu2, add) in overrides
    # and statistics: Distiller builds its ImageNet ResNets with them, torchvision's do not have them
    (r"^quantization/post_train_quant/resnet18", "prunecli.models.imagenet.distiller_resnet:resnet18"),
    (r"preact_resnet20_cifar|preact_resnet_cifar", "preact_resnet20_cifar"),
    (r"preact_resnet18", "preact_resnet18"),
    (r"resnet20|^ssl/ssl_|^gss/", "resnet20_cifar"),
    (r"resnet56", "resnet56_cifar"),
    (r"plain20", "plain20_cifar"),
    (r"vgg16_cifar", "vgg16_cifar"),
    (r"vgg19", "vgg19"),
    (r"alexnet_bn", "alexnet_bn"),
    (r"alexnet", "alexnet"),
    (r"mobilenet", "mobilenet"),
    (r"resnext101", "resnext101_32x4d"),
    (r"resnet18|quant_aware_train_linear_quant", "resnet18"),
    (r"resnet50", "resnet50"),
    (r"word_lang", "word_language_model"),
    (r"maskrcnn", "maskrcnn_resnet50_fpn"),
)

#: Models built for ImageNet but whose pooling adapts to the input size: a 64x64 batch keeps
#: the sweep cheap. Any other ImageNet model runs at its default 224x224.
SMALL_SIDE = 64

STATUS_OK, STATUS_FAILED, STATUS_SKIPPED = "ok", "failed", "skipped"


@dataclass
class PrunerResult:
    """Reached vs target sparsity of one pruner, on the tensors it was the last to prune."""

    name: str
    class_name: str
    check: str  # element | structure | record (no predictable target)
    epoch: int  # the epoch of its last pruning
    tensors: int
    target: float | None
    reached: float  # element sparsity of its masks (all its tensors together)
    reached_structures: float | None = None  # mean fraction of pruned structures per tensor
    ok: bool = True
    detail: str = ""


@dataclass
class ThinningResult:
    name: str
    thinnings: int
    params_before: int
    params_after: int
    zero_structures: int  # all-zero filters (or channels) in the masks just before thinning
    removed_structures: int = 0  # how many of them thinning removed
    kept_coupled: int = 0  # zero structures kept because coupled tensors were pruned apart
    ok: bool = True
    detail: str = ""


@dataclass
class RuntimeOutcome:
    path: str  # relative to the examples directory
    status: str  # ok | failed | skipped
    reason: str = ""
    model: str | None = None
    input_shape: tuple[int, ...] | None = None
    epochs: int = 0
    wall_s: float = 0.0
    pruners: list[PrunerResult] = field(default_factory=list)
    regularizers: dict[str, float] = field(default_factory=dict)  # name -> element sparsity reached
    thinning: list[ThinningResult] = field(default_factory=list)
    #: layers the schedule's quantizer rounds (0: no quantizer), and the weight bit widths used
    quantized_layers: int = 0
    weight_bits: list[int] = field(default_factory=list)
    #: fingerprints of the masks the run produced (see :class:`MaskFingerprints`); not in the JSON
    masks: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("masks")
        data["input_shape"] = list(self.input_shape) if self.input_shape else None
        data["wall_s"] = round(self.wall_s, 2)
        for pruner in data["pruners"]:
            for key in ("target", "reached", "reached_structures"):
                if pruner[key] is not None:
                    pruner[key] = round(pruner[key], 4)
        data["regularizers"] = {k: round(v, 4) for k, v in self.regularizers.items()}
        return data

    def summary(self) -> str:
        """One line for a table cell: status, epochs, time, pruners meeting their targets."""
        if self.status == STATUS_SKIPPED:
            return f"skipped: {self.reason}"
        if self.status == STATUS_FAILED:
            return f"failed: {self.reason}"
        checked = [p for p in self.pruners if p.check != "record"]
        images = self.input_shape is not None and len(self.input_shape) == 4
        side = f" at {self.input_shape[-2]}x{self.input_shape[-1]}" if images else ""
        parts = [f"ok: {self.epochs} epochs{side}"]
        if checked:
            parts.append(f"{len(checked)}/{len(checked)} pruner targets met")
        if len(checked) < len(self.pruners):
            parts.append(f"{len(self.pruners) - len(checked)} threshold/random pruner(s) recorded")
        if self.regularizers:
            zeroed = max(self.regularizers.values())
            parts.append(
                f"{len(self.regularizers)} regularizer(s), up to {zeroed:.1%} of their weights zeroed"
            )
        if self.quantized_layers:
            bits = "/".join(str(b) for b in self.weight_bits) or "no"
            parts.append(
                f"{self.quantized_layers} layers quantized ({bits}-bit weights), plan matches the simulation"
            )
        if self.thinning:
            changes = dict.fromkeys(_params_change(t) for t in self.thinning)  # one per distinct result
            parts.append("thinned " + ", ".join(changes))
        coupled = sum(t.kept_coupled for t in self.thinning)
        if coupled:
            parts.append(
                f"{coupled} zero filters kept in residual-coupled tensors pruned without a Leader "
                "group (prunecli validate warns)"
            )
        return "; ".join(parts)


def _params_change(result: ThinningResult) -> str:
    return f"{result.params_before:,} -> {result.params_after:,} params"


# --------------------------------------------------------------------------------------------
# which model


def target_model(relpath: str, schedule: Any = None) -> str | None:
    """The model an example was written for: a thinning extension's ``arch``, else the path."""
    if schedule is not None:
        for comp in schedule.components.get("extensions", {}).values():
            arch = comp.args.get("arch")
            if isinstance(arch, str) and arch:
                return arch
    for pattern, model in MODEL_PATTERNS:
        if re.search(pattern, relpath):
            return model
    return None


def model_available(name: str) -> bool:
    from prunecli.models import available_models

    if ":" in name:  # a module:factory spec
        import importlib

        module, _, factory = name.partition(":")
        try:
            return hasattr(importlib.import_module(module), factory)
        except ImportError:
            return False
    return name in available_models()


def _family(name: str) -> str | None:
    from prunecli.models import ZOO

    entry = ZOO.get(name)
    return entry.family if entry is not None else None


@dataclass
class Workload:
    """How a model that is not an image classifier is fed: one fixed batch and its objective."""

    batch: Any
    objective: Any  # prunecli.training.loop.Objective
    lr: float = 0.01


def _language_model() -> tuple[Any, tuple[int, ...], Workload]:
    """Distiller's word language model on a tiny generated token-file corpus (2 columns, 35 steps)."""
    import tempfile

    from prunecli.data import load_dataset
    from prunecli.data.text import write_markov_corpus
    from prunecli.models import create_model
    from prunecli.training.tasks import LanguageModelObjective

    with tempfile.TemporaryDirectory() as folder:
        bundle = load_dataset("text", write_markov_corpus(folder, sentences=(40, 5, 5)))
    model, _ = create_model("word_language_model", dataset="text", num_classes=bundle.num_classes)
    batch = next(iter(bundle.loaders(2)[0]))
    return model, (1, 1), Workload(batch, LanguageModelObjective())


def _detector(name: str) -> tuple[Any, tuple[int, ...], Workload]:
    """A torchvision detector at 64x64 (few sampled boxes) on two fake images with boxes and masks."""
    from prunecli.data import load_dataset
    from prunecli.models import create_model
    from prunecli.training.tasks import DetectionObjective

    few = "box_batch_size_per_image=16&rpn_pre_nms_top_n_train=100&rpn_post_nms_top_n_train=50"
    model, _ = create_model(f"{name}?min_size={SMALL_SIDE}&max_size={SMALL_SIDE}&{few}")
    bundle = load_dataset("fake_detection", size=2, image_size=SMALL_SIDE, num_classes=91, val_fraction=0.0)
    batch = next(iter(bundle.loaders(2)[0]))
    # torchvision's detection reference scales 0.02 for 16 images linearly: 0.0025 for 2
    return model, (1, 3, SMALL_SIDE, SMALL_SIDE), Workload(batch, DetectionObjective(), lr=0.0025)


#: zoo families that are not image classifiers: model, example input shape and workload
WORKLOADS: dict[str, Callable[[str], tuple[Any, tuple[int, ...], Workload]]] = {
    "text": lambda name: _language_model(),
    "detection": _detector,
}


def _family_dataset(name: str) -> str | None:
    from prunecli.models import ZOO

    entry = ZOO.get(name)
    if entry is not None and entry.family == "cifar":
        return "cifar10"
    if ".imagenet." in name:  # a module:factory spec of an ImageNet model
        return "imagenet"
    return None


def build_model(name: str) -> tuple[Any, tuple[int, ...]]:
    """The model with random weights and a batch-1 input shape it accepts (64x64 where it can)."""
    import torch

    from prunecli.models import create_model, default_input_shape

    model, spec = create_model(name, dataset=_family_dataset(name))
    shape = tuple(default_input_shape(spec))
    if shape[-1] > SMALL_SIDE:
        small = (*shape[:-2], SMALL_SIDE, SMALL_SIDE)
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros(small))
            shape = small
        except RuntimeError:
            pass  # a fixed-size classifier: keep the default size
        model.train()
    return model, shape


# --------------------------------------------------------------------------------------------
# sparsity oracles


def element_sparsity(mask: Any) -> float:
    return float((mask == 0).sum()) / mask.numel()


def zero_slices(mask: Any, dim: int) -> int:
    flat = mask.movedim(dim, 0).reshape(mask.size(dim), -1)
    return int((flat.abs().sum(dim=1) == 0).sum())


def _structure_count(pruner: Any, mask: Any) -> tuple[int, Callable[[Any], float]]:
    """(number of structures in the tensor, mask -> fraction of them pruned)."""
    from prunecli.schedule.vocabulary import structure_dims

    group = pruner.group_type
    if group in structure_dims():
        dim = structure_dims()[group]
        n = mask.size(dim)
        return n, lambda m: zero_slices(m, dim) / n
    if group == "Blocks":
        block = pruner.target.reps * pruner.target.depth
        n = mask.numel() // block
        return n, element_sparsity
    raise ValueError(f"no structure oracle for group type {group!r}")


def _oracle(pruner: Any, policy_levels: Mapping[str, float] | None) -> tuple[str, Callable | None]:
    """How a pruner's final sparsity is predicted: ('element'|'structure', name -> target) or record."""
    from prunecli.pruners.base import wildcard_lookup

    preset = getattr(pruner, "preset", None)  # the Distiller class of an engine composition
    if preset == "AutomatedGradualPruner":
        return "element", lambda name: pruner.schedule.final_sparsity
    if preset == "SparsityLevelParameterPruner" or policy_levels:
        table = dict(policy_levels or pruner.levels)
        return "element", lambda name: wildcard_lookup(table, name) or 0.0
    if str(preset).startswith(("RandomLevelStructureParameterPruner", "BernoulliFilterPruner")):
        return "record", None  # random levels or draws: nothing to predict
    if getattr(pruner, "group_type", None) is not None:  # a ranked class: its one-shot or final AGP level
        if pruner.follows_agp:
            return "structure", lambda name: pruner.schedule.final_sparsity
        return "structure", lambda name: pruner.schedule.level
    return "record", None


# --------------------------------------------------------------------------------------------
# mask fingerprints


FINGERPRINT_VERSION = 2


class MaskFingerprints:
    """Compact digests of every mask a run produces, to prove a refactor leaves them bit-identical.

    ``final`` holds one sha256 prefix per tensor of its last mask (dtype, shape and raw bytes, so
    scaled masks such as DropFilter's count too). ``steps`` digests every mask twice per epoch:
    as the step's forward pass sees them (after ``on_minibatch_begin``, where pruners and thinning
    act and per-step masks such as DropFilter's exist) and at the end of the epoch. Runs of equal
    digests are written ``digest*count`` so a 300-epoch run stays one short line.
    """

    def __init__(self) -> None:
        self.epochs: list[str] = []
        # name -> (the mask tensor itself, its version counter, its digest). The tensor is held,
        # not its id: a freed mask's id can be reused by the next one, which would look unchanged.
        self._cache: dict[str, tuple[Any, int, str]] = {}
        #: format of the digests (entries recorded with another format are not compared)
        self.version = FINGERPRINT_VERSION

    def _cached(self, name: str, mask: Any) -> str:
        hit = self._cache.get(name)
        if hit is None or hit[0] is not mask or hit[1] != mask._version:
            hit = (mask, mask._version, self.digest(mask))
            self._cache[name] = hit
        return hit[2]

    @staticmethod
    def digest(mask: Any) -> str:
        import hashlib

        data = mask.detach().cpu().contiguous()
        head = f"{data.dtype}:{tuple(data.shape)}:".encode()
        return hashlib.sha256(head + data.numpy().tobytes()).hexdigest()[:16]

    def record(self, masks: Mapping[str, Any]) -> None:
        import hashlib

        total = hashlib.sha256()
        for name in sorted(masks):
            mask = masks[name]
            total.update(f"{name}={self._cached(name, mask) if mask is not None else '-'};".encode())
        self.epochs.append(total.hexdigest()[:16])

    def result(self, masks: Mapping[str, Any]) -> dict[str, Any]:
        final = {n: self._cached(n, m) for n, m in sorted(masks.items()) if m is not None}
        runs: list[list[Any]] = []
        for digest in self.epochs:
            if runs and runs[-1][0] == digest:
                runs[-1][1] += 1
            else:
                runs.append([digest, 1])
        steps = " ".join(d if n == 1 else f"{d}*{n}" for d, n in runs)
        return {"final": final, "steps": steps, "version": self.version}


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class _PrunerTrack:
    name: str
    pruner: Any
    last_epoch: int
    last_order: int
    levels: Mapping[str, float] | None
    snapshot: dict[str, Any] = field(default_factory=dict)  # tensor -> mask at its last pruning


def _pruner_tracks(schedule: Any, scheduler: Any) -> dict[str, _PrunerTrack]:
    by_name = {}
    for _, policy in scheduler.policy_order:
        pruner = getattr(policy, "pruner", None)
        if pruner is not None:
            by_name[pruner.name] = (pruner, getattr(policy, "levels", None))
    tracks: dict[str, _PrunerTrack] = {}
    for policy in schedule.policies:
        if policy.kind != "pruner" or policy.instance not in by_name:
            continue
        pruner, levels = by_name[policy.instance]
        track = tracks.get(policy.instance)
        last = max(policy.epochs)
        if track is None:
            tracks[policy.instance] = _PrunerTrack(policy.instance, pruner, last, policy.order, levels)
        elif (last, policy.order) > (track.last_epoch, track.last_order):
            track.last_epoch, track.last_order, track.levels = last, policy.order, levels
    return tracks


def _owned(pruner: Any, masks: Mapping[str, Any]) -> list[str]:
    names = pruner.owned_names()
    if names is None:  # decided per name ('*' tables): whatever it masked
        return [n for n, m in masks.items() if m is not None]
    return [n for n in names if n in masks]


def _snapshot(tracks: Iterable[_PrunerTrack], epoch: int, masks: Mapping[str, Any]) -> None:
    for track in tracks:
        if track.last_epoch == epoch:
            track.snapshot = {
                n: (masks[n].detach().clone() if masks[n] is not None else None)
                for n in _owned(track.pruner, masks)
            }


def _last_writers(tracks: Mapping[str, _PrunerTrack]) -> dict[str, str]:
    """Tensor -> the pruner that masked it last (later epoch, then later declaration)."""
    writer: dict[str, tuple[tuple[int, int], str]] = {}
    for track in tracks.values():
        for name in track.snapshot:
            key = (track.last_epoch, track.last_order)
            if name not in writer or key > writer[name][0]:
                writer[name] = (key, track.name)
    return {name: owner for name, (_, owner) in writer.items()}


def _judge(track: _PrunerTrack, names: list[str], class_name: str) -> PrunerResult:
    check, target_of = _oracle(track.pruner, track.levels)
    masks = {n: track.snapshot[n] for n in names}
    zeros = sum(int((m == 0).sum()) for m in masks.values() if m is not None)
    numel = sum(m.numel() for m in masks.values() if m is not None)
    result = PrunerResult(
        name=track.name,
        class_name=class_name,
        check=check,
        epoch=track.last_epoch,
        tensors=len(names),
        target=None,
        reached=zeros / numel if numel else 0.0,
    )
    if check == "record" or not names:
        return result
    targets = {target_of(n) for n in names}
    result.target = targets.pop() if len(targets) == 1 else None
    problems: list[str] = []
    fractions: list[float] = []
    for name, mask in masks.items():
        target = target_of(name)
        if mask is None:
            if target > 0:
                problems.append(f"{name}: no mask (target {target:.3f})")
            continue
        if check == "element":
            # weights tied with the k-th smallest magnitude go too (as in Distiller): allow a
            # handful of them in large tensors
            reached, tolerance = element_sparsity(mask), max(1.0 / mask.numel(), 1e-5)
        else:
            n, measure = _structure_count(track.pruner, mask)
            reached, tolerance = measure(mask), 1.0 / n
        fractions.append(reached)
        if abs(reached - target) > tolerance + 1e-9:
            problems.append(f"{name}: {reached:.4f} vs target {target:.4f}")
    if check == "structure" and fractions:
        result.reached_structures = sum(fractions) / len(fractions)
    result.ok = not problems
    result.detail = "; ".join(problems[:3])
    return result


def thin_epochs_of(schedule: Any) -> set[int]:
    return {e for p in schedule.policies if p.kind == "extension" for e in p.epochs}


def _thinning_policies(scheduler: Any) -> list[Any]:
    return [policy for _, policy in scheduler.policy_order if hasattr(policy, "recipes")]


#: thinning mode -> the dimensions of a 4D weight whose all-zero slices Distiller removes
THINNED_DIMS: dict[str, tuple[int, ...]] = {"filters": (0,), "channels": (1,), "both": (0, 1)}


@dataclass
class _ThinningCensus:
    """Shapes and all-zero slices of every masked convolution weight around one thinning."""

    epoch: int
    before: dict[str, tuple[tuple[int, ...], dict[int, int]]]  # name -> (shape, dim -> zero slices)
    after: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _census(epoch: int, model: Any, masks: Mapping[str, Any]) -> _ThinningCensus:
    params = dict(model.named_parameters())
    before = {}
    for name, mask in masks.items():
        if mask is not None and mask.dim() == 4:
            before[name] = (tuple(params[name].shape), {d: zero_slices(mask, d) for d in (0, 1)})
    return _ThinningCensus(epoch, before)


def _removal_shortfall(
    census: _ThinningCensus, dims: tuple[int, ...], coupled: set[str]
) -> tuple[int, int, int, list[str]]:
    """(zero slices, of which removed, kept in coupled tensors, examples of other shortfalls).

    A tensor that the schedule prunes apart from the tensors it is coupled with (a residual add
    without a complete Leader group) keeps zero slices by design: no channel is zero in all of
    them, and removing it from one would change the model (``prunecli validate`` warns).
    """
    zeros = removed = kept_coupled = 0
    kept: list[str] = []
    for name, (shape, zero) in census.before.items():
        for dim in dims:
            if not zero[dim]:
                continue
            gone = shape[dim] - census.after[name][dim]
            zeros += zero[dim]
            removed += min(gone, zero[dim])
            if gone < zero[dim] and dim == 0 and name in coupled:
                kept_coupled += zero[dim] - gone
            elif gone < zero[dim]:
                kept.append(
                    f"{name} dim {dim}: {shape[dim]} -> {census.after[name][dim]}, "
                    f"expected {shape[dim] - zero[dim]}"
                )
    return zeros, removed, kept_coupled, kept


def _coupled_apart(schedule: Any, model: Any, example: Any) -> set[str]:
    """Filter-pruned tensors whose coupled tensors are not in one Leader group with them."""
    from prunecli.graph.schedule_check import uncovered_couplings

    return {t for _, _, coupled, _ in uncovered_couplings(schedule, model, example) for t in coupled}


def _count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _thinning_available() -> bool:
    import importlib

    return hasattr(importlib.import_module("prunecli.thinning"), "thin_model")


def _skip(relpath: str, reason: str, **kwargs: Any) -> RuntimeOutcome:
    return RuntimeOutcome(relpath, STATUS_SKIPPED, reason, **kwargs)


def _load(path: Path, relpath: str) -> tuple[Any, RuntimeOutcome | None]:
    from prunecli.errors import ScheduleError
    from prunecli.schedule import NotAScheduleError, load_schedule

    try:
        return load_schedule(path), None
    except NotAScheduleError as exc:
        return None, _skip(relpath, exc.message)
    except ScheduleError as exc:
        first = exc.problems[0].message if exc.problems else exc.message
        if "quantizers" in exc.message:
            return None, _skip(relpath, exc.message)
        return None, _skip(relpath, f"the schedule does not validate ({first})")


def run_example(
    path: str | os.PathLike[str], examples_dir: str | os.PathLike[str] | None = None
) -> RuntimeOutcome:
    """Run one example schedule end to end on its target model and judge the result."""
    return run_schedule(path, examples_dir)[0]


def run_schedule(
    path: str | os.PathLike[str], examples_dir: str | os.PathLike[str] | None = None
) -> tuple[RuntimeOutcome, Any]:
    """:func:`run_example`, also returning the model as the run left it (None when not run)."""
    path = Path(path)
    root = Path(examples_dir) if examples_dir is not None else DEFAULT_EXAMPLES
    try:
        relpath = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        relpath = path.name
    schedule, skipped = _load(path, relpath)
    if skipped is not None:
        return skipped, None
    model_name = target_model(relpath, schedule)
    if model_name is None:
        return _skip(relpath, "no target model is known for this file"), None
    if not model_available(model_name):
        return _skip(relpath, f"model {model_name!r} is not available", model=model_name), None
    if schedule.components.get("extensions") and not _thinning_available():
        return _skip(relpath, "prunecli.thinning.thin_model is not available", model=model_name), None
    start = time.perf_counter()
    outcome = RuntimeOutcome(relpath, STATUS_OK, model=model_name)
    model = None
    try:
        model = _run(schedule, model_name, outcome)
    except Exception as exc:  # noqa: BLE001 -- the sweep reports every failure, whatever its kind
        outcome.status = STATUS_FAILED
        message = getattr(exc, "message", None) or next(iter(str(exc).splitlines()), "")
        outcome.reason = f"{type(exc).__name__}: {message}"[:300]
    outcome.wall_s = time.perf_counter() - start
    return outcome, model


def _run(schedule: Any, model_name: str, outcome: RuntimeOutcome) -> Any:
    import torch
    import torch.nn.functional as F

    from prunecli.compression import build_scheduler
    from prunecli.schedule.names import resolve_names

    torch.manual_seed(0)
    random.seed(0)  # RandomLevelStructureParameterPruner draws its level from Python's generator
    family = _family(model_name)
    workload = None
    if family in WORKLOADS:
        model, shape, workload = WORKLOADS[family](model_name)
    else:
        model, shape = build_model(model_name)
    outcome.input_shape = shape
    schedule = resolve_names(schedule, {n: tuple(p.shape) for n, p in model.named_parameters()})
    lr = workload.lr if workload is not None else 0.01
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    example = torch.randn(shape)
    coupled = _coupled_apart(schedule, model, example) if thin_epochs_of(schedule) else set()
    scheduler = build_scheduler(schedule, model, optimizer, example_input=example, steps_per_epoch=1)
    tracks = _pruner_tracks(schedule, scheduler)
    thinners = _thinning_policies(scheduler)
    thin_epochs = thin_epochs_of(schedule)
    params_start = _count_params(model)
    censuses: list[_ThinningCensus] = []
    x = torch.randn((2, *shape[1:]))
    fingerprints = MaskFingerprints()
    outcome.epochs = max(_last_compression_epoch(schedule) + 1, 1)
    for epoch in range(outcome.epochs):
        model.train()
        scheduler.on_epoch_begin(epoch, optimizer)
        _snapshot(tracks.values(), epoch, scheduler.masks)
        if epoch in thin_epochs:
            censuses.append(_census(epoch, model, scheduler.masks))
        scheduler.on_minibatch_begin(epoch, 0, 1, optimizer)
        if epoch in thin_epochs:
            censuses[-1].after = {n: tuple(p.shape) for n, p in model.named_parameters()}
        # statistics-based pruners that could not rank at epoch begin do it in this hook
        late = [t for t in tracks.values() if t.last_epoch == epoch and None in t.snapshot.values()]
        _snapshot(late, epoch, scheduler.masks)
        fingerprints.record(scheduler.masks)
        if workload is None:
            logits = model(x)
            y = torch.randint(0, logits.size(1), (2,))
            task_loss = F.cross_entropy(logits, y)
        else:
            workload.objective.begin(model)
            task_loss = workload.objective.loss(model, workload.batch, torch.device("cpu"))[0]
        loss = scheduler.before_backward_pass(epoch, 0, 1, task_loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        if workload is not None:
            workload.objective.after_backward(model)
        scheduler.before_parameter_optimization(epoch, 0, 1, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, 0, 1, optimizer)
        last_loss = loss.item()
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": last_loss, "max": 0.0})
        fingerprints.record(scheduler.masks)
    outcome.masks = fingerprints.result(scheduler.masks)
    if not math.isfinite(last_loss):
        raise FloatingPointError(f"loss became {last_loss}")
    _judge_all(schedule, tracks, outcome)
    _judge_regularizers(scheduler, outcome)
    _judge_thinning(schedule, model, thinners, params_start, censuses, example, outcome, coupled)
    _judge_quantization(scheduler, model, x, outcome)
    failing = [p.name for p in outcome.pruners if not p.ok] + [t.name for t in outcome.thinning if not t.ok]
    if failing:
        outcome.status = STATUS_FAILED
        details = [p.detail for p in outcome.pruners if not p.ok] + [
            t.detail for t in outcome.thinning if not t.ok
        ]
        outcome.reason = f"targets not met by {', '.join(failing)}: {details[0]}"[:300]
    return model


def _last_compression_epoch(schedule: Any) -> int:
    """The last epoch a pruner, regularizer or extension acts on: a quantizer rounds the same way
    on every epoch of its (often 200-epoch) range, so one epoch exercises it."""
    epochs = [e for p in schedule.policies if not p.is_lr and p.kind != "quantizer" for e in p.epochs]
    return max(epochs, default=-1)


def _judge_quantization(scheduler: Any, model: Any, x: Any, outcome: RuntimeOutcome) -> None:
    """Apply a post-training quantizer, then check the exported plan against the simulation: every
    quantized weight the hooks produced equals the plan's rounding of the effective weight."""
    import torch

    stage = getattr(scheduler, "quantization", None)
    if stage is None:
        return
    stage.apply_post_training()
    model.eval()
    layers = {layer.name: layer for layer in stage.quantizer.layers}
    with torch.no_grad():
        simulated = {n: layer.quantized_weight() for n, layer in layers.items() if "weight" in layer.ops}
        out = model(x)
    if not torch.isfinite(out).all():
        raise FloatingPointError("the quantized model's output is not finite")
    plan = stage.finalize()
    params = dict(model.named_parameters())
    for name, expected in simulated.items():
        tq = plan.layers[name].weight
        effective = params[f"{name}.weight" if name else "weight"].detach()
        got = tq.dequantize(tq.quantize(effective))
        if not tq.integral:  # pruned zeros stay zero off the grid
            got = torch.where(effective == 0, torch.zeros_like(got), got)
        # (x * scale) and (x / (1 / scale)) may round a tie differently: allow one step on a few elements
        step = float(tq.scale.max())
        off = (got - expected).abs()
        if float(off.max()) > step * 1.001 or float((off > 1e-6 * (1 + step)).float().mean()) > 1e-3:
            raise AssertionError(f"plan of {name} does not reproduce the simulated weights")
    outcome.quantized_layers = len(plan.layers)
    outcome.weight_bits = sorted({layer.weight.bits for layer in plan.layers.values() if layer.weight})


def _judge_all(schedule: Any, tracks: Mapping[str, _PrunerTrack], outcome: RuntimeOutcome) -> None:
    writers = _last_writers(tracks)
    for name, track in tracks.items():
        owned = [n for n in track.snapshot if writers.get(n) == name]
        class_name = schedule.components["pruners"][name].class_name
        outcome.pruners.append(_judge(track, owned, class_name))


def _judge_regularizers(scheduler: Any, outcome: RuntimeOutcome) -> None:
    params = dict(scheduler.model.named_parameters())
    for _, policy in scheduler.policy_order:
        regularizer = getattr(policy, "regularizer", None)
        if regularizer is None:
            continue
        names = [n for n in regularizer.params_names if n in params]
        zeros = sum(int((params[n] == 0).sum()) for n in names)
        numel = sum(params[n].numel() for n in names)
        outcome.regularizers[policy.name] = zeros / numel if numel else 0.0


def _judge_thinning(
    schedule: Any,
    model: Any,
    thinners: list[Any],
    params_start: int,
    censuses: list[_ThinningCensus],
    example: Any,
    outcome: RuntimeOutcome,
    coupled: set[str],
) -> None:
    """Distiller's rule: every all-zero filter (channel) of a masked convolution is removed."""
    import torch

    if not thinners:
        return
    params_end = _count_params(model)
    model.eval()
    with torch.no_grad():
        out = model(example)
    for policy in thinners:
        epochs = {
            e
            for p in schedule.policies
            if p.kind == "extension" and p.instance == policy.name
            for e in p.epochs
        }
        zeros = removed = kept_coupled = 0
        kept: list[str] = []
        for census in censuses:
            if census.epoch in epochs:
                z, r, c, k = _removal_shortfall(census, THINNED_DIMS[policy.mode], coupled)
                zeros, removed, kept_coupled, kept = zeros + z, removed + r, kept_coupled + c, kept + k
        result = ThinningResult(
            policy.name, len(policy.recipes), params_start, params_end, zeros, removed, kept_coupled
        )
        problems = []
        if not policy.recipes:
            problems.append("the extension never ran")
        if kept:
            problems.append(f"{zeros - removed} of {zeros} zero structures kept ({kept[0]})")
        if not torch.isfinite(out).all():
            problems.append("the thinned model's output is not finite")
        result.ok = not problems
        result.detail = f"{policy.name}: {'; '.join(problems)}" if problems else ""
        outcome.thinning.append(result)


# --------------------------------------------------------------------------------------------
# the sweep


def example_files(examples_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    root = Path(examples_dir) if examples_dir is not None else DEFAULT_EXAMPLES
    return sorted(root.rglob("*.yaml"))


def sweep(
    examples_dir: str | os.PathLike[str] | None = None, *, only: str | None = None
) -> list[RuntimeOutcome]:
    root = Path(examples_dir) if examples_dir is not None else DEFAULT_EXAMPLES
    outcomes = []
    for path in example_files(root):
        if only and not re.search(only, path.relative_to(root).as_posix()):
            continue
        outcome = run_example(path, root)
        print(f"{outcome.path}: {outcome.summary()} ({outcome.wall_s:.1f} s)", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    return outcomes


def write_json(outcomes: list[RuntimeOutcome], path: str | os.PathLike[str], *, merge: bool = False) -> None:
    """The committed cache read by scripts/compatibility.py (sorted, stable keys).

    With ``merge`` the outcomes replace their files' records in an existing JSON, so one
    example can be refreshed without rerunning the whole sweep.
    """
    examples = read_json(path) if merge and Path(path).exists() else {}
    examples.update({o.path: o.to_dict() for o in outcomes})
    data = {
        "generated_by": "scripts/runtime_sweep.py --write docs/compatibility-runtime.json",
        "examples": dict(sorted(examples.items())),
    }
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def write_fingerprints(
    outcomes: list[RuntimeOutcome], path: str | os.PathLike[str], *, merge: bool = False
) -> None:
    """The committed mask fingerprints checked by tests/test_examples_runtime.py."""
    table = json.loads(Path(path).read_text(encoding="utf-8")) if merge and Path(path).exists() else {}
    table.update({o.path: o.masks for o in outcomes if o.status == STATUS_OK})
    Path(path).write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike[str] = DEFAULT_JSON) -> dict[str, dict[str, Any]]:
    """Example path -> its recorded outcome (as written by :func:`write_json`)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["examples"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=str(DEFAULT_EXAMPLES), help="the Distiller examples directory")
    parser.add_argument("--only", help="a regular expression on the example paths to run")
    parser.add_argument(
        "--write", help="write the outcomes as JSON to this path (with --only: update their records there)"
    )
    parser.add_argument(
        "--fingerprints",
        help="write the runs' mask fingerprints as JSON to this path (with --only: update their records)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    outcomes = sweep(args.examples, only=args.only)
    if args.write:
        write_json(outcomes, args.write, merge=bool(args.only))
    if args.fingerprints:
        write_fingerprints(outcomes, args.fingerprints, merge=bool(args.only))
    failed = [o for o in outcomes if o.status == STATUS_FAILED]
    print(
        f"{sum(o.ok for o in outcomes)} ok, {len(failed)} failed, "
        f"{sum(o.status == STATUS_SKIPPED for o in outcomes)} skipped"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
