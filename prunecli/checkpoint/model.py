"""Rebuild a ready-to-use model from a checkpoint: architecture, thin shapes, then weights.

Security rule: a model described as user code (``file.py:Factory`` or ``package.module:factory``) is
built only when the caller names that model explicitly (``--model``), because building it runs that
code. Zoo and torchvision models are built from the checkpoint alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunecli.errors import CheckpointError, PruneCliError, SourceLocation

from . import distiller_recipe
from .io import load_checkpoint

USER_CODE_KINDS = frozenset({"file", "import"})
_MAX_LISTED = 8


def same_model(a: Any, b: Any) -> bool:
    """Two model specs name the same architecture (the same file, for ``file.py:Factory``)."""
    if (a.kind, a.name) != (b.kind, b.name):
        return False
    if a.kind != "file":
        return True
    try:
        return os.path.samefile(a.path, b.path)
    except OSError:
        return os.path.abspath(a.path) == os.path.abspath(b.path)


def _user_code_refusal(spec: Any, path: str) -> CheckpointError:
    action = f"execute the Python file {spec.path}" if spec.kind == "file" else f"import and run {spec.name}"
    return CheckpointError(
        f"the checkpoint's model is user code: building it would {action}, which is not done "
        "unless you name the model yourself",
        location=SourceLocation(path),
        hint=f"if you trust that code, pass --model {spec.to_string()}",
    )


def _build(checkpoint: dict[str, Any], requested: str | None, path: str) -> tuple[nn.Module, Any]:
    """The dense model the checkpoint was made from, and its ModelSpec (None if not expressible)."""
    from prunecli.models import ModelSpec, create_model, parse_spec

    stored = ModelSpec.from_dict(checkpoint["model"]) if checkpoint["model"] is not None else None
    origin = _origin(checkpoint)
    if requested is not None:
        wanted = parse_spec(requested)
        if stored is not None and same_model(wanted, stored):
            spec = ModelSpec.from_dict({**stored.to_dict(), "kwargs": {**stored.kwargs, **wanted.kwargs}})
            return spec.build(), spec
        dataset = stored.dataset if stored is not None else (origin or {}).get("dataset")
        return create_model(wanted, dataset=dataset)
    if stored is not None:
        if stored.kind in USER_CODE_KINDS:
            raise _user_code_refusal(stored, path)
        return stored.build(), stored
    if isinstance(origin, dict) and isinstance(origin.get("arch"), str):
        spec = parse_spec(origin["arch"])
        if spec.kind in USER_CODE_KINDS:
            raise _user_code_refusal(spec, path)
        return create_model(spec, dataset=origin.get("dataset"))
    raise CheckpointError(
        f"the file holds weights only ({len(checkpoint['state_dict'])} tensors) and no model description",
        location=SourceLocation(path),
        hint="name the architecture with --model (e.g. --model resnet20_cifar or --model net.py:Net)",
    )


def _origin(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """``extras["distiller"]`` of a checkpoint read from Distiller (arch, dataset, recipes)."""
    extras = checkpoint["extras"]
    origin = extras.get("distiller") if isinstance(extras, dict) else None
    return origin if isinstance(origin, dict) else None


def _apply_recipe(model: nn.Module, checkpoint: dict[str, Any], path: str) -> None:
    """Reshape the dense model; a Distiller checkpoint's recipes are first translated into ``recipe``."""
    origin = _origin(checkpoint)
    try:
        if origin is not None and origin.get("thinning_recipes"):
            translated = distiller_recipe.to_prunecli(origin["thinning_recipes"], model, path)
            checkpoint["recipe"] = translated.to_dict() if translated is not None else None
            origin["thinning_recipes"] = []  # now in "recipe", relative to the dense model
        if checkpoint["recipe"] is not None:
            from prunecli.thinning import ThinningRecipe, apply_recipe

            apply_recipe(model, ThinningRecipe.from_dict(checkpoint["recipe"]))
    except PruneCliError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"the checkpoint's thinning recipe does not fit this model ({type(exc).__name__}: {exc})",
            location=SourceLocation(path),
            hint="the recipe was made for a different architecture; pass the model it was trained with (--model)",
        ) from None


def fill_batchnorm_counters(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` counters a BatchNorm expects but the file lacks, as torch does.

    Files written before torch 0.4.1 (Distiller's dense baselines among them) have no counter;
    ``BatchNorm.load_state_dict`` then starts it at 0 instead of failing, and so does this.
    Only a BatchNorm whose running statistics are in the file gets one.
    """
    filled = dict(state_dict)
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._NormBase) or module.num_batches_tracked is None:
            continue
        prefix = f"{name}." if name else ""
        if f"{prefix}running_mean" in filled and f"{prefix}num_batches_tracked" not in filled:
            filled[f"{prefix}num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return filled


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def check_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path: str,
    label: str,
    *,
    written_for: str | None = None,
) -> None:
    """Compare names and shapes first, so a mismatch is reported as a list instead of torch's dump."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    lines = []
    if missing:
        lines.append(f"missing from the checkpoint: {_listed(missing)}")
    if unexpected:
        lines.append(f"not in the model: {_listed(unexpected)}")
    if shapes:
        lines.append(f"different shapes: {_listed(shapes)}")
    if lines:
        raise CheckpointError(
            f"the weights do not fit model {label}: " + "; ".join(lines),
            location=SourceLocation(path),
            hint=(
                f"the checkpoint was written for model {written_for}; "
                if written_for
                else "the checkpoint was written for another model (or another width / class count); "
            )
            + "pass the model it was trained with via --model",
        )


def _stored_label(checkpoint: dict[str, Any]) -> str | None:
    if checkpoint["model"] is not None:
        from prunecli.models import ModelSpec

        return ModelSpec.from_dict(checkpoint["model"]).to_string()
    origin = _origin(checkpoint)
    return origin.get("arch") if origin is not None else None


def resolve(path: str | os.PathLike[str], *, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint and rebuild its model; return both, the checkpoint completed.

    Completed means: ``model`` holds the spec the model was built from (when it has one),
    ``recipe`` holds the thinning that reshaped it (Distiller's recipes translated), and
    ``state_dict`` holds every tensor the model needs (missing BatchNorm counters filled).
    ``model`` is the ``--model`` spec string: it overrides the stored description and is
    required for weights-only files and for models defined by user code.
    """
    path = str(path)
    checkpoint = load_checkpoint(path)
    written_for = _stored_label(checkpoint)
    net, spec = _build(checkpoint, model, path)
    _apply_recipe(net, checkpoint, path)
    _prepare_int8(net, checkpoint, path)
    if spec is not None and checkpoint["model"] is None:
        checkpoint["model"] = spec.to_dict()
    checkpoint["state_dict"] = fill_batchnorm_counters(net, checkpoint["state_dict"])
    label = model or written_for or type(net).__name__
    check_state_dict(net, checkpoint["state_dict"], path, label, written_for=written_for)
    net.load_state_dict(checkpoint["state_dict"], strict=True)
    return net, checkpoint


def _int8_record(checkpoint: dict[str, Any], path: str) -> Any:
    from prunecli.quantization.stored import int8_record

    try:
        return int8_record(checkpoint)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"the checkpoint's int8 model (extras['int8']) is damaged ({type(exc).__name__}: {exc})",
            location=SourceLocation(path),
            hint="re-create it with `prunecli thin` from the float checkpoint",
        ) from None


def _prepare_int8(net: nn.Module, checkpoint: dict[str, Any], path: str) -> None:
    """An int8 checkpoint: fold the BatchNorms as before saving, and put the dequantized weights back.

    The model then holds exactly the float values the int8 kernels multiply by, so ``resolve``
    still returns a float model (for reports and MAC counts) and :func:`load_model` converts it.
    """
    record = _int8_record(checkpoint, path)
    if record is None:
        return
    from prunecli.quantization.int8 import dequantize_codes, refold
    from prunecli.quantization.packing import unpack

    refold(net, record.folded)
    weights = {}
    for name, codes in record.codes.items():
        layer = record.plan.layers.get(name)
        if layer is None or layer.weight is None:
            raise CheckpointError(
                f"the checkpoint's int8 model stores weights of {name} but its plan does not quantize them",
                location=SourceLocation(path),
                hint="re-create it with `prunecli thin` from the float checkpoint",
            )
        weights[f"{name}.weight"] = dequantize_codes(unpack(codes), layer.weight)
    checkpoint["state_dict"] = {**checkpoint["state_dict"], **weights}


def load_model(path: str | os.PathLike[str], *, model: str | None = None) -> nn.Module:
    """Rebuild the model stored in a checkpoint (re-thinned), with its weights, in eval mode.

    ``model`` is the ``--model`` spec string: it overrides the stored description and is required
    for weights-only files and for models defined by user code. An int8 checkpoint gives back its
    int8 model (:class:`prunecli.quantization.int8.Int8Model`), built from the stored codes.
    """
    net, checkpoint = resolve(path, model=model)
    record = _int8_record(checkpoint, str(path))
    if record is None:
        return net.eval()
    from prunecli.quantization.int8 import convert_folded, unpacked_codes

    return convert_folded(net.eval(), record.plan, record.folded, codes=unpacked_codes(record.codes))


def import_checkpoint(
    source: str | os.PathLike[str], output: str | os.PathLike[str], *, model: str | None = None
) -> dict[str, Any]:
    """Convert any readable checkpoint (a Distiller ``.pth.tar`` above all) into a prunecli one.

    The model is rebuilt and its weights loaded first, so the written file is known to load; it
    holds the model spec, the translated thinning recipe, weights (BatchNorm counters filled),
    masks, optimizer class and state, epoch and Distiller's ``extras``. Returns the payload.
    """
    from .io import save_checkpoint

    _, checkpoint = resolve(source, model=model)
    origin = _origin(checkpoint)
    if origin is not None:
        origin.pop("thinning_recipes", None)  # translated into "recipe"
    save_checkpoint(output, checkpoint)
    return checkpoint


def stored_model(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """The model spec and data set a checkpoint names, for defaults; never a model defined by user code.

    A user-code model is left out on purpose: building it runs that code, which only happens
    when the user names it (``--model``).
    """
    from prunecli.models import parse_spec

    checkpoint = load_checkpoint(path)
    label = _stored_label(checkpoint)
    origin = _origin(checkpoint) or {}
    dataset = (checkpoint["model"] or {}).get("dataset") or origin.get("dataset")
    if label is None or parse_spec(label).kind in USER_CODE_KINDS:
        label = None
    return label, dataset if isinstance(dataset, str) else None


def example_input_shape(
    checkpoint: Mapping[str, Any], path: str | os.PathLike[str], *, model: str | None = None
) -> tuple[int, ...]:
    """The (1, C, H, W) example batch shape for the model of a loaded ``checkpoint``.

    ``model`` (the ``--model`` spec) names the architecture when given; the data set the checkpoint
    recorded still sizes the input, since a model defined by user code cannot tell it by itself.
    """
    from prunecli.models import ModelSpec, default_input_shape

    recorded = checkpoint.get("model")
    dataset = recorded.get("dataset") if isinstance(recorded, Mapping) else None
    if model:
        return default_input_shape(model, dataset)
    if isinstance(recorded, Mapping):
        return default_input_shape(ModelSpec.from_dict(dict(recorded)))
    raise CheckpointError(
        "cannot tell the model's input shape from the checkpoint",
        location=SourceLocation(str(path)),
        hint="pass --input-shape, e.g. --input-shape 1,3,32,32",
    )
