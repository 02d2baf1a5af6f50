"""Small pieces a run is assembled from: device, optimizer, model statistics, schedule facts."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunecli.errors import ConfigError
from prunecli.schedule.vocabulary import THINNING_CLASSES

from .config import RunConfig
from .schema import OPTIMIZERS

#: optimizer name -> the run-configuration fields it takes directly
_DIRECT_ARGS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "momentum", "weight_decay"),
    "adam": ("lr", "weight_decay"),
    "adamw": ("lr", "weight_decay"),
}


def dataset_options_for_model(dataset: str, options: dict[str, Any], model: str) -> dict[str, Any]:
    """``load_dataset`` options; random (``fake``) images take the model's own input size.

    A torchvision ``vit_b_16`` only accepts 224x224 images and a CIFAR ResNet expects 32x32, so
    fake data of a fixed size would fail for one or the other. An explicit
    ``dataset_options.image_size`` still wins.
    """
    if dataset != "fake" or "image_size" in options:
        return dict(options)
    from prunecli.errors import ModelError
    from prunecli.models import default_input_shape

    try:
        shape = default_input_shape(model)
    except ModelError:  # a user model that declares no input_shape: the data set's default stands
        return dict(options)
    return {**options, "image_size": list(shape[1:])}


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    cls = getattr(torch.optim, OPTIMIZERS[config.optimizer])
    direct = {name: getattr(config, name) for name in _DIRECT_ARGS[config.optimizer]}
    try:
        return cls(model.parameters(), **direct, **config.optimizer_args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot build the {cls.__name__} optimizer: {exc}", hint="check optimizer_args in the config"
        ) from None


def load_initial_weights(
    model: nn.Module, path: str, model_spec: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Distiller's ``--exp-load-weights-from``: the model to train, and the checkpoint it came from.

    A checkpoint of the same, unthinned architecture has its weights copied into ``model``. A
    thinned one (a prunecli recipe, or a Distiller file's thinning recipes) cannot fit the dense
    model: its own, thinned model is returned instead and the run continues on that architecture,
    as Distiller does when it loads a thinned checkpoint. ``model_spec`` is the run's ``--model``:
    the user named it, so a checkpoint of a model defined by their code may be rebuilt with it.
    The returned checkpoint is completed (see :func:`prunecli.checkpoint.model.resolve`).
    """
    from prunecli.checkpoint.model import resolve

    source, checkpoint = resolve(path, model=model_spec)
    if checkpoint["recipe"] is not None:
        return source, checkpoint
    state = source.state_dict()
    own = model.state_dict()
    wrong = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong or set(state) - set(own):
        raise ConfigError(
            f"initial_weights {path} do not fit the model: {', '.join(wrong[:5]) or 'extra tensors'}"
            + (" and more" if len(wrong) > 5 else ""),
            hint="give a checkpoint of the same architecture (e.g. a dense run's checkpoint.pt), or a "
            "thinned one that names its thinning",
        )
    model.load_state_dict(state)
    return model, checkpoint


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], path: str) -> None:
    """The saved optimizer fits: same groups and parameter counts, per-parameter buffers of the right shape.

    torch checks the counts but not the buffer shapes, which would only fail at the next step.
    """
    from prunecli.errors import CheckpointError, SourceLocation

    groups = state.get("param_groups") or []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [i for group in groups for i in group.get("params", [])]
    problem = None
    if len(groups) != len(optimizer.param_groups) or len(saved_ids) != len(params):
        problem = f"{len(saved_ids)} parameters in {len(groups)} group(s), the model has {len(params)}"
    else:
        for index, param in zip(saved_ids, params):
            for key, value in (state.get("state") or {}).get(index, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    problem = f"{key} {tuple(value.shape)} for a parameter of shape {tuple(param.shape)}"
                    break
            if problem:
                break
    if problem:
        raise CheckpointError(
            f"the checkpoint's optimizer state does not fit the model ({problem})",
            location=SourceLocation(path),
            hint="use --initial-weights instead of --resume to start the optimizer afresh",
        )


def model_stats(model: nn.Module, example_input: torch.Tensor) -> dict[str, Any]:
    """Parameter counts, sparsity and MACs (Distiller's definition) of the model as it is now."""
    from prunecli.report.compute import compute_summary

    params = sum(p.numel() for p in model.parameters())
    nnz = sum(int((p.detach() != 0).sum()) for p in model.parameters())
    layers = compute_summary(model, example_input)
    return {
        "params": params,
        "nnz_params": nnz,
        "sparsity": 1 - nnz / params if params else 0.0,
        "macs": sum(layer.macs for layer in layers),
        "effective_macs": sum(layer.effective_macs for layer in layers),
    }


def first_pruning_epoch(schedule: Any) -> int | None:
    """The first epoch on which a pruner, regularizer or thinning extension acts."""
    epochs = [e for p in schedule.policies if not p.is_lr for e in p.epochs]
    return min(epochs) if epochs else None


def unreachable_policies(schedule: Any, epochs: int) -> list[str]:
    """Messages for non-LR policies that the shortened run cuts off (absolute epochs are kept)."""
    messages = []
    for policy in schedule.policies:
        if policy.is_lr or not policy.epochs:
            continue
        missed = [e for e in policy.epochs if e >= epochs]
        if not missed:
            continue
        where = f" ({policy.location})" if policy.location else ""
        if len(missed) == len(policy.epochs):
            messages.append(
                f"{policy.kind} '{policy.instance}'{where} never fires: its first epoch is {policy.epochs[0]} "
                f"but the run has {epochs} epoch(s) (0..{epochs - 1}); use --epochs {max(policy.epochs) + 1}"
            )
        else:
            messages.append(
                f"{policy.kind} '{policy.instance}'{where} is cut short: epochs {missed[0]}..{missed[-1]} are "
                f"beyond the run's last epoch {epochs - 1}; use --epochs {max(policy.epochs) + 1} to complete it"
            )
    return messages


def schedule_hints(schedule: Any) -> dict[str, Any]:
    """Run settings a schedule carries: a dialect's own training section (Intel LPOT's ``train:``,
    compiled into run settings by the dialect), or ``arch``/``dataset`` named by a thinning
    extension, as Distiller's schedules do. The config file and the command line override them."""
    hints: dict[str, Any] = dict(getattr(schedule, "training", None) or {})
    for component in schedule.components.get("extensions", {}).values():
        if component.class_name not in THINNING_CLASSES:
            continue
        arch, dataset = component.args.get("arch"), component.args.get("dataset")
        if isinstance(arch, str) and arch and "model" not in hints:
            hints["model"] = arch
        if isinstance(dataset, str) and dataset and "dataset" not in hints:
            hints["dataset"] = dataset
    return hints
