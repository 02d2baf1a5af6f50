"""Numerical check that thinning kept the function, built so that it cannot pass vacuously.

Two tensors are compared before and after thinning, on the same probe batch: the model's outputs
and the *classifier's input features* (the input of the last weighted layer to run, a ``Linear``
in a classifier, captured with a forward hook). A freshly initialised model can have an output
that does not depend on its input at all (torchvision's ViT heads are zero-initialised; GoogLeNet's
output is the same for every image at initialisation), and comparing such an output proves nothing.

So every compared tensor is also computed on a second, independent random input. Its *variation*
(largest element-wise difference between the two) says how much the tensor reacts to its input:

* the tolerance is a small fraction of that variation (:data:`VARIATION_FRACTION`), never a fixed
  absolute number, with a floor at floating-point noise (:data:`NOISE_EPS` machine epsilons of
  the tensor's largest magnitude);
* a tensor is *informative* when that tolerance is at most :data:`INFORMATIVE_FRACTION` of its
  variation: a wrong thinning that moves it by five percent of its natural range is caught. An
  output that is not informative is reported as such and the features carry the check;
* when neither is informative the check says so (``status = "unverifiable"``) instead of passing.

Approximate thinning (channels normalised by LayerNorm removed on request) reports the same figures
as a *deviation* instead of failing on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: tolerance as a fraction of how much the compared tensor varies between two random inputs
VARIATION_FRACTION = 1e-4
#: floating-point noise floor, in machine epsilons of the tensor's dtype times its largest magnitude
NOISE_EPS = 32.0
#: a tensor is informative when its tolerance is at most this fraction of its variation
INFORMATIVE_FRACTION = 5e-2
#: seed of the second probe input (fixed, so a check is reproducible)
ALTERNATE_SEED = 20261202
#: per-layer tolerance used only to name the first diverging layer after a failure
LAYER_TOLERANCE = 1e-4

FEATURES = "features"


def flat_outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flat_outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flat_outputs(v)]
    return []


def eval_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return flat_outputs(model(*inputs))
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------- probing
@dataclass
class Probe:
    """What one eval-mode forward pass shows: outputs and the classifier's input features."""

    outputs: list[torch.Tensor]
    features: torch.Tensor | None
    feature_module: str | None


FEATURE_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def probe(model: nn.Module, inputs: tuple[torch.Tensor, ...], feature_module: str | None = None) -> Probe:
    """Run ``model`` once; ``feature_module`` names the layer whose input is captured (default: the
    last ``Linear``/conv layer to run, i.e. the classifier)."""
    seen: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, m in model.named_modules():
        if feature_module is not None and name != feature_module:
            continue
        if feature_module is None and not isinstance(m, FEATURE_LAYERS):
            continue

        def hook(module, args, name=name):
            if args and isinstance(args[0], torch.Tensor):
                seen.append((name, args[0].detach().clone()))

        handles.append(m.register_forward_pre_hook(hook))
    try:
        outputs = eval_outputs(model, inputs)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        return Probe(outputs, None, None)
    name, features = seen[-1]
    return Probe(outputs, features, name)


def alternate_inputs(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A second probe batch, independent of the first but drawn at the same scale."""
    gen = torch.Generator().manual_seed(ALTERNATE_SEED)
    result = []
    for x in inputs:
        if x.is_floating_point():
            std = float(x.float().std()) if x.numel() > 1 else 1.0
            std = std if std > 0 else 1.0
            noise = torch.randn(x.shape, generator=gen, dtype=torch.float32)
            result.append((noise * std + float(x.float().mean())).to(dtype=x.dtype, device=x.device))
        else:  # integer inputs (token ids): the same values in another order
            perm = torch.randperm(x.numel(), generator=gen).to(x.device)
            result.append(x.reshape(-1)[perm].reshape(x.shape))
    return tuple(result)


# ------------------------------------------------------------------------------- comparing
@dataclass
class Comparison:
    """One compared tensor: its scale, how much it varies with the input, and the difference found."""

    name: str
    scale: float  # largest magnitude of the reference
    variation: float  # largest difference of the reference between the two probe inputs
    difference: float  # largest difference between reference and thinned model
    tolerance: float
    informative: bool
    shape_problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.shape_problem is None and self.difference <= self.tolerance

    @property
    def relative_error(self) -> float:
        """Difference as a fraction of the reference's largest magnitude."""
        return (
            self.difference / self.scale
            if self.scale > 0
            else (0.0 if self.difference == 0 else float("inf"))
        )

    @property
    def error_vs_variation(self) -> float:
        """Difference as a fraction of how much the tensor varies with its input."""
        if self.variation > 0:
            return self.difference / self.variation
        return 0.0 if self.difference == 0 else float("inf")

    def describe(self) -> str:
        if self.shape_problem:
            return f"{self.name}: {self.shape_problem}"
        return (
            f"{self.name} differs by {self.difference:.3g} (tolerance {self.tolerance:.3g}, "
            f"varies by {self.variation:.3g} between two random inputs)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": _finite(self.scale),
            "variation": _finite(self.variation),
            "difference": _finite(self.difference),
            "tolerance": _finite(self.tolerance),
            "relative_error": _finite(self.relative_error),
            "error_vs_variation": _finite(self.error_vs_variation),
            "informative": bool(self.informative),
            "passed": bool(self.passed),
            **({"problem": self.shape_problem} if self.shape_problem else {}),
        }


def _finite(value: float) -> float | None:
    return float(value) if value == value and abs(value) != float("inf") else None


def tolerance_for(reference: torch.Tensor, variation: float) -> tuple[float, bool]:
    """(tolerance, informative) for a tensor that varies by ``variation`` between two inputs."""
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    eps = torch.finfo(reference.dtype).eps if reference.is_floating_point() else 0.0
    noise = NOISE_EPS * eps * scale
    tol = max(VARIATION_FRACTION * variation, noise)
    informative = variation > 0 and tol <= INFORMATIVE_FRACTION * variation
    return tol, informative


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return float((a.float() - b.float()).abs().max())


@dataclass
class Verification:
    """The result of comparing a model before and after thinning (plain figures in :meth:`to_dict`)."""

    comparisons: list[Comparison] = field(default_factory=list)
    feature_module: str | None = None
    approximate: bool = False  # a deviation is expected (normalised channels removed)

    @property
    def informative(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.informative]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def basis(self) -> str:
        names = [c.name for c in self.informative]
        outputs = any(n != FEATURES for n in names)
        features = FEATURES in names
        if outputs and features:
            return "outputs and features"
        return "outputs" if outputs else ("features" if features else "none")

    @property
    def status(self) -> str:
        if self.approximate:
            return "deviation"
        if not self.passed:
            return "failed"
        return "verified" if self.informative else "unverifiable"

    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    def summary(self) -> str:
        """One line for people: what was compared and how it went."""
        constant = [c.name for c in self.comparisons if not c.informative]
        notes = f"; {', '.join(constant)} barely varies with the input" if constant else ""
        if self.status == "deviation":
            worst = max((c.relative_error for c in self.comparisons), default=0.0)
            return f"approximate: largest relative error {worst:.3g} ({self.describe_errors()}){notes}"
        if self.status == "failed":
            return "; ".join(c.describe() for c in self.failures())
        if self.status == "unverifiable":
            return (
                "not verified: neither the output nor the classifier's input features vary with the "
                "input (an untrained model?)"
            )
        return f"verified on {self.basis}{notes}"

    def describe_errors(self) -> str:
        return ", ".join(f"{c.name}: {c.relative_error:.3g}" for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "basis": self.basis,
            "summary": self.summary(),
            "feature_module": self.feature_module,
            "tolerance_rule": (
                f"max({VARIATION_FRACTION:g} x variation between two random inputs, "
                f"{NOISE_EPS:g} eps x scale); informative when tolerance <= "
                f"{INFORMATIVE_FRACTION:g} x variation"
            ),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


@dataclass
class Reference:
    """The model before thinning, probed on the example input and on an alternate one."""

    first: Probe
    variation: list[float]  # per output, then features
    inputs: tuple[torch.Tensor, ...]

    @classmethod
    def record(cls, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Reference:
        first = probe(model, inputs)
        second = probe(model, alternate_inputs(inputs), first.feature_module)
        pairs = list(zip(first.outputs, second.outputs))
        if first.features is not None and second.features is not None:
            pairs.append((first.features, second.features))
        variation = [_max_abs_diff(a, b) if a.shape == b.shape else float("inf") for a, b in pairs]
        return cls(first, variation, inputs)

    def compare(
        self,
        model: nn.Module,
        kept_features: Callable[[str], list[int] | None] = lambda name: None,
        *,
        approximate: bool = False,
    ) -> Verification:
        """Probe the thinned ``model`` and compare; ``kept_features`` gives the classifier's kept inputs."""
        after = probe(model, self.inputs, self.first.feature_module)
        result = Verification(feature_module=self.first.feature_module, approximate=approximate)
        if len(after.outputs) != len(self.first.outputs):
            result.comparisons.append(
                Comparison(
                    "outputs", 0.0, 0.0, float("inf"), 0.0, False,
                    f"{len(after.outputs)} outputs instead of {len(self.first.outputs)}",
                )
            )  # fmt: skip
            return result
        names = [
            f"output {k}" if len(self.first.outputs) > 1 else "output" for k in range(len(after.outputs))
        ]
        pairs = list(zip(names, self.first.outputs, after.outputs))
        if self.first.features is not None and after.features is not None:
            ref = _align_features(
                self.first.features, after.features, kept_features(self.first.feature_module or "")
            )
            pairs.append((FEATURES, ref if ref is not None else self.first.features, after.features))
        elif self.first.features is not None:
            result.comparisons.append(
                Comparison(FEATURES, 0.0, 0.0, float("inf"), 0.0, False, "the classifier layer did not run")
            )
        for (name, ref, out), variation in zip(pairs, self.variation):
            result.comparisons.append(_compare(name, ref, out, variation))
        return result


def _compare(name: str, ref: torch.Tensor, out: torch.Tensor, variation: float) -> Comparison:
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    tol, informative = tolerance_for(ref, variation if variation != float("inf") else 0.0)
    if ref.shape != out.shape:
        return Comparison(
            name, scale, variation, float("inf"), tol, informative,
            f"shape {tuple(out.shape)} instead of {tuple(ref.shape)}",
        )  # fmt: skip
    return Comparison(name, scale, variation, _max_abs_diff(ref, out), tol, informative)


def _align_features(ref: torch.Tensor, out: torch.Tensor, kept: list[int] | None) -> torch.Tensor | None:
    """The reference features restricted to the inputs the thinned classifier still reads."""
    if ref.shape == out.shape or kept is None or ref.dim() != out.dim():
        return None
    diff = [d for d in range(ref.dim()) if ref.shape[d] != out.shape[d]]
    if len(diff) != 1 or out.shape[diff[0]] != len(kept):
        return None
    return ref.index_select(diff[0], torch.as_tensor(kept, dtype=torch.long, device=ref.device))


def kept_inputs(tensors: dict[str, list[tuple[int, list[int]]]]) -> Callable[[str], list[int] | None]:
    """For a recipe's ``tensors``: the input indices a layer still reads (its weight's dim-1 steps)."""

    def lookup(module: str) -> list[int] | None:
        for dim, idx in tensors.get(f"{module}.weight", []):
            if dim == 1:
                return idx
        return None

    return lookup


# ------------------------------------------------------------------------------- diagnosis
def mismatch(reference: list[torch.Tensor], actual: list[torch.Tensor]) -> str | None:
    """Per-layer closeness used to locate a failure: None when equal within :data:`LAYER_TOLERANCE`
    of the reference's largest magnitude, else a description."""
    if len(reference) != len(actual):
        return f"{len(actual)} outputs instead of {len(reference)}"
    for k, (ref, out) in enumerate(zip(reference, actual)):
        if ref.shape != out.shape:
            return f"output {k} has shape {tuple(out.shape)} instead of {tuple(ref.shape)}"
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        diff = _max_abs_diff(ref, out)
        if not diff <= LAYER_TOLERANCE * max(scale, 1e-6):
            return f"output {k} differs by {diff:.3g} (scale {scale:.3g})"
    return None


def layer_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[tuple[str, torch.Tensor]]:
    """Every leaf module's first tensor output, in execution order."""
    captured: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, m in model.named_modules():
        if name and not any(True for _ in m.children()):

            def hook(module, args, output, name=name):
                outs = flat_outputs(output)
                if outs:
                    captured.append((name, outs[0].clone()))

            handles.append(m.register_forward_hook(hook))
    try:
        eval_outputs(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return captured


def first_divergence(
    before: list[tuple[str, torch.Tensor]],
    after: list[tuple[str, torch.Tensor]],
    kept_channels: Callable[[str], list[int] | None],
) -> str | None:
    """The first layer whose output differs once the removed channels are dropped from the original."""
    for (name, ref), (name_after, out) in zip(before, after):
        if name != name_after:
            return name_after
        ref = _align(ref, out, kept_channels(name))
        if ref is None:
            continue
        if mismatch([ref], [out]) is not None:
            return name
    return None


def _align(ref: torch.Tensor, out: torch.Tensor, kept: list[int] | None) -> torch.Tensor | None:
    if ref.shape == out.shape:
        return ref
    return _align_features(ref, out, kept)
