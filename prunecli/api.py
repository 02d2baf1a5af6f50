"""prunecli's public Python API: the functions behind the commands, typed, in one place.

Everything a program needs to use prunecli as a library, without the command line::

    from prunecli.api import build_compression, export_compact, load_model, thin

========================  ====================================================================
``load_schedule``         read and validate a Distiller schedule (``ScheduleError`` lists every problem)
``check_schedule``        the same check as ``prunecli validate``, returned as a :class:`CheckResult`
``build_compression``     the compression scheduler of a schedule for a model (names resolved inside)
``export_compact``        a thinned copy of a model being trained under a live scheduler
``thin``                  ``prunecli thin``: a checkpoint file in, a compact checkpoint file out
``load_model``            a ready-to-use model from any prunecli checkpoint (compact ones included)
``Pruning``               Intel LPOT's pruning object and hooks, on prunecli's scheduler
``WeightPruningConfig``   Neural Compressor 2.x's pruning config (compiled into a schedule)
``prepare_compression``   Neural Compressor 2.x's callbacks for a user's training loop
``convert_schedule``      ``prunecli convert``: a schedule file in another schedule language, with what it cannot say
``PruningScheduler``      iterative pruning (NNI's shape): generator proposes, loop prunes, thins,
                          fine-tunes, evaluates; ``compress()``, ``get_best_result()``
``LevelPruner``           the pruner a ``PruningScheduler`` drives: an engine target and metric
``build_generator``       a task generator by name (``agp``, ``linear``, ``lottery_ticket``, ...)
``TaskGenerator``         the two-method base class of user-written generators (with ``Task``,
                          ``TaskResult``, ``SearchSpace``, ``Budget``)
========================  ====================================================================

``prunecli`` re-exports exactly these names (``from prunecli import thin``). The command-line
commands are thin shells over them; see docs/python-api.md.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.checkpoint import load_model, save_checkpoint
from prunecli.checkpoint.compact import default_compact_path, thin_checkpoint
from prunecli.checkpoint.model import example_input_shape, resolve
from prunecli.compat.inc import WeightPruningConfig, prepare_compression
from prunecli.compat.lpot import Pruning
from prunecli.compression import CompressionScheduler, build_compression
from prunecli.errors import CheckpointError, SourceLocation
from prunecli.iterative import (
    Budget,
    LevelPruner,
    PruningScheduler,
    SearchSpace,
    Task,
    TaskGenerator,
    TaskResult,
    build_generator,
)
from prunecli.schedule import Schedule, load_schedule
from prunecli.schedule.convert import Conversion
from prunecli.thinning.compact import CompactModel, ThinOptions, thin_to_compact
from prunecli.thinning.recipe import ThinningRecipe
from prunecli.validation import CheckResult, ModelInfo
from prunecli.validation import check_file as check_schedule

__all__ = [
    "Budget",
    "CheckResult",
    "CompactModel",
    "CompressionScheduler",
    "Conversion",
    "LevelPruner",
    "ModelInfo",
    "Pruning",
    "PruningScheduler",
    "Schedule",
    "SearchSpace",
    "Task",
    "TaskGenerator",
    "TaskResult",
    "ThinOptions",
    "ThinSummary",
    "WeightPruningConfig",
    "build_compression",
    "build_generator",
    "check_schedule",
    "convert_schedule",
    "export_compact",
    "load_model",
    "load_schedule",
    "prepare_compression",
    "thin",
]


def export_compact(
    model: nn.Module,
    scheduler: CompressionScheduler,
    example_input: Any,
    *,
    previous: ThinningRecipe | dict[str, Any] | None = None,
    options: ThinOptions | None = None,
) -> CompactModel:
    """A thinned copy of ``model`` as ``scheduler`` has masked it; ``model`` itself is left as it is.

    The recipe of the result is relative to the dense model: ``previous`` (the thinning applied to
    ``model`` before this scheduler was built, e.g. a resumed checkpoint's ``recipe``), then every
    thinning the schedule did during training (``FilterRemover``/``ChannelRemover``), then this one.
    Masks that are all ones after thinning are dropped (they carry no information).
    """
    compact = copy.deepcopy(model).eval()
    return thin_to_compact(
        compact,
        example_input,
        masks=scheduler.masks,
        previous=[previous, *scheduler.thinning_recipes],
        options=options,
    )


@dataclass
class ThinSummary:
    """What :func:`thin` did (plain data through :meth:`to_dict`, the ``prunecli thin --json`` document)."""

    input: str
    output: str
    options: ThinOptions
    removed_channels: int
    tensors_changed: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    seconds: float
    verification: dict[str, Any] | None = None  # the last entry of the recipe's ``checks``
    warnings: list[str] = field(default_factory=list)  # e.g. a tensor whose every filter was pruned
    #: the int8 conversion when the checkpoint carried a quantization plan (None: not converted)
    int8: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        """The thinned model was compared with the masked one and matched."""
        return self.options.verify and (self.verification or {}).get("status") == "verified"

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            **{k: v for k, v in self.options.thin_model_kwargs().items() if k != "verify"},
            "removed_channels": self.removed_channels,
            "tensors_changed": self.tensors_changed,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "verified": self.verified,
            "verification": self.verification,
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
            "int8": self.int8,
        }


def thin(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    options: ThinOptions | None = None,
    int8: bool = True,
) -> ThinSummary:
    """Thin the model of ``checkpoint`` and save it as a compact checkpoint (``NAME.compact.pt``).

    ``model`` names the architecture when the checkpoint does not (and allows a model defined by
    your code to be built); ``input_shape`` is the example batch's shape for tracing (default: the
    model's own). The compact file keeps every key but the optimizer and scheduler state. When the
    checkpoint carries a quantization plan (and ``int8`` is true) the thinned model is then
    converted to int8 and the compact file is an int8 checkpoint (see docs/quantization.md).
    """
    from prunecli.report.compute import total_macs

    options = options or ThinOptions()
    source = Path(checkpoint)
    # the completed checkpoint: a Distiller file's thinning recipes are in data["recipe"] then
    net, data = resolve(source, model=model)
    net.eval()
    example = torch.randn(input_shape or example_input_shape(data, source, model=model))
    params_before, macs_before = _param_count(net), total_macs(net, example)
    began = time.perf_counter()
    result = thin_checkpoint(data, net, example, options=options)
    seconds = time.perf_counter() - began
    target = Path(output) if output is not None else default_compact_path(source)
    step = result.compact.step
    payload, converted = _maybe_int8(result.payload, data, net, example, step, source, int8)
    save_checkpoint(target, payload)
    return ThinSummary(
        input=str(source),
        output=str(target),
        options=options,
        removed_channels=step.removed_channels,
        tensors_changed=len(step.tensors),
        params_before=params_before,
        params_after=_param_count(net),
        macs_before=macs_before,
        macs_after=total_macs(net, example),
        seconds=seconds,
        verification=step.checks[-1] if step.checks else None,
        warnings=list(step.warnings),
        int8=converted,
    )


def _maybe_int8(
    payload: dict[str, Any],
    source_payload: dict[str, Any],
    net: nn.Module,
    example: torch.Tensor,
    step: ThinningRecipe,
    source: Path,
    enabled: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The int8 payload when the checkpoint carries a plan (sliced to the thinning), else ``payload``."""
    from prunecli.checkpoint.compact import quantize_checkpoint
    from prunecli.quantization.int8 import thin_plan
    from prunecli.quantization.stored import int8_record, model_bytes, stored_plan

    if int8_record(source_payload) is not None:
        raise CheckpointError(
            f"{source} is already an int8 checkpoint; its model cannot be thinned again",
            location=SourceLocation(str(source)),
            hint="thin the float checkpoint the int8 one was made from",
        )
    plan = stored_plan(source_payload)
    if plan is None or not enabled:
        return payload, None
    converted = quantize_checkpoint(payload, net, example, thin_plan(plan, step.tensors))
    model = converted.model
    summary = {
        "kernels": len(model.kernels),
        "simulated": len(model.simulated),
        "float": len(model.float_layers),
        "bytes_fp32": model_bytes(payload),
        "bytes_int8": model_bytes(converted.payload),
    }
    return converted.payload, summary


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convert_schedule(
    source: str | os.PathLike[str],
    to: str,
    *,
    model: str | None = None,
    pruner: str | None = None,
    dataset: str | None = None,
) -> Conversion:
    """``prunecli convert``: the schedule file ``source`` written in language ``to``.

    ``to`` is ``distiller``, ``native`` or ``nni`` (docs/dialects.md). ``model`` resolves names
    first (needed for an NNI config_list, which selects modules; it also expands ``re:`` patterns
    for NNI's module names); ``pruner`` names the NNI pruner of a config_list that names none.
    What the target cannot express is listed in :attr:`Conversion.lost`, never dropped silently.
    """
    from prunecli.schedule.convert import convert_schedule as convert
    from prunecli.schedule.names import module_classes, resolve_names
    from prunecli.validation import load_model_info

    schedule = load_schedule(source, pruner=pruner)
    if model is not None:
        info = load_model_info(model, meta=True, dataset=dataset)
        schedule = resolve_names(schedule, info.shapes, module_classes(info.module))
    return convert(schedule, to)
