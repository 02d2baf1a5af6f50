"""Compare an exported artefact with the PyTorch model it came from, and find the layer at fault.

The artefact is run by its own runtime on fresh random inputs (not the one it was traced with, so a
trace that froze a data-dependent branch or a Python value shows up) and every output is compared with
the eager model's. The error measure is the largest absolute difference divided by the largest
magnitude of the reference output (at least 1), so it reads the same for logits and for probabilities.

When the whole model fails (an unsupported operation, or outputs that differ), its sub-modules are
exported and checked one by one, each with the input it received in the eager model (leaf layers first,
then larger blocks), and the first one that fails is named.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .fold import forward_with_hooks
from .formats import Exporter, ExportOptions, Runner, flatten_outputs

#: each module checked on its own costs one export, so the search is capped
MAX_MODULES_CHECKED = 400


@dataclass(frozen=True)
class Comparison:
    """Worst relative difference over all inputs and outputs; ``problem`` when shapes or counts differ."""

    max_error: float
    problem: str | None = None

    def passed(self, tolerance: float) -> bool:
        return self.problem is None and self.max_error <= tolerance


def verification_inputs(example: torch.Tensor, dynamic_batch: bool, count: int = 2) -> list[torch.Tensor]:
    """Fresh random inputs (seeded, so a failure reproduces); other batch sizes when the batch is dynamic."""
    generator = torch.Generator().manual_seed(1234)
    sizes = [1, 3] if dynamic_batch else [example.shape[0]] * count
    return [
        torch.randn((size, *example.shape[1:]), generator=generator, dtype=example.dtype) for size in sizes
    ]


def compare(model: nn.Module, runner: Runner, inputs: list[torch.Tensor]) -> Comparison:
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = flatten_outputs(model(x))
        got = runner(x)
        if len(got) != len(expected):
            return Comparison(float("inf"), f"{len(got)} outputs instead of {len(expected)}")
        for i, (a, b) in enumerate(zip(expected, got)):
            if tuple(a.shape) != tuple(b.shape):
                return Comparison(
                    float("inf"), f"output {i} has shape {tuple(b.shape)} instead of {tuple(a.shape)}"
                )
            a64, b64 = a.detach().double(), b.detach().double()
            if a64.numel() == 0:
                continue
            if not torch.isfinite(b64).all() and torch.isfinite(a64).all():
                return Comparison(float("inf"), f"output {i} has non-finite values")
            scale = max(1.0, a64.abs().max().item())
            worst = max(worst, (a64 - b64).abs().max().item() / scale)
    return Comparison(worst)


def _module_inputs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Each sub-module with the first single-tensor input it received: leaves in execution order first,
    then composite modules from the smallest up, so the first failure is the narrowest culprit."""
    seen: dict[str, tuple[str, nn.Module, torch.Tensor]] = {}
    sizes: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        sizes[name] = sum(1 for _ in module.modules())

        def hook(m: nn.Module, args: tuple, name: str = name) -> None:
            if name not in seen and len(args) == 1 and torch.is_tensor(args[0]):
                seen[name] = (name, m, args[0].detach().clone())

        handles.append(module.register_forward_pre_hook(hook))
    forward_with_hooks(model, example, handles)
    order = {name: i for i, name in enumerate(seen)}
    return sorted(seen.values(), key=lambda item: (sizes[item[0]], order[item[0]]))


def check_artefact(
    exporter: Exporter,
    model: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    path: Path,
    inputs: list[torch.Tensor],
) -> Comparison:
    """Write ``model`` to ``path`` and compare it with ``model``; exceptions propagate."""
    exporter.write(model, example, path, options)
    return compare(model, exporter.load(path), inputs)


def find_failing_layer(
    exporter: Exporter,
    model: nn.Module,
    example: torch.Tensor,
    options: ExportOptions,
    tolerance: float,
) -> tuple[str, str] | None:
    """(module name, what went wrong) for the narrowest sub-module that fails on its own, or None."""
    with tempfile.TemporaryDirectory(prefix="prunecli-export-") as tmp:
        for index, (name, leaf, x) in enumerate(_module_inputs(model, example)):
            if index >= MAX_MODULES_CHECKED:
                break
            leaf_options = ExportOptions(options.opset, dynamic_batch=False)
            path = Path(tmp) / f"leaf{index}{exporter.suffix}"
            try:
                result = check_artefact(exporter, leaf, x, leaf_options, path, [x])
            except Exception as exc:  # the exporters raise many types
                return name, f"{type(leaf).__name__} cannot be exported: {first_line(exc)}"
            if not result.passed(tolerance):
                return name, (
                    f"{type(leaf).__name__} gives different results "
                    f"({result.problem or f'relative error {result.max_error:.2e}'})"
                )
    return None


def first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
