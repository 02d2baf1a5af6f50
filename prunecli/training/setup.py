"""Small pieces a run is assembled from: device, optimizer, model statistics, schedule facts."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunecli.errors import ConfigError

from .config import RunConfig
from .schema import OPTIMIZERS

#: optimizer name -> the run-configuration fields it takes directly
_DIRECT_ARGS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "momentum", "weight_decay"),
    "adam": ("lr", "weight_decay"),
    "adamw": ("lr", "weight_decay"),
}

#: thinning extensions whose ``arch``/``dataset`` arguments name the model and data set
THINNING_CLASSES = frozenset({"FilterRemover", "ChannelRemover", "StructureRemover"})


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    cls = getattr(torch.optim, OPTIMIZERS[config.optimizer])
    direct = {name: getattr(config, name) for name in _DIRECT_ARGS[config.optimizer]}
    try:
        return cls(model.parameters(), **direct, **config.optimizer_args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot build the {cls.__name__} optimizer: {exc}", hint="check optimizer_args in the config"
        ) from None


def load_initial_weights(model: nn.Module, path: str, model_spec: str | None = None) -> None:
    """Distiller's ``--exp-load-weights-from``: weights only; optimizer and epoch start fresh.

    ``model_spec`` is the run's ``--model``: the user named it, so a checkpoint of a model
    defined by their code may be rebuilt with it.
    """
    from prunecli.checkpoint import load_model

    source = load_model(path, model=model_spec)
    state = source.state_dict()
    own = model.state_dict()
    wrong = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong or set(state) - set(own):
        raise ConfigError(
            f"initial_weights {path} do not fit the model: {', '.join(wrong[:5]) or 'extra tensors'}"
            + (" and more" if len(wrong) > 5 else ""),
            hint="give a checkpoint of the same, unthinned architecture (e.g. a dense run's checkpoint.pt)",
        )
    model.load_state_dict(state)


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
    """``arch``/``dataset`` named by a thinning extension, as Distiller's schedules do."""
    hints: dict[str, Any] = {}
    for component in schedule.components.get("extensions", {}).values():
        if component.class_name not in THINNING_CLASSES:
            continue
        arch, dataset = component.args.get("arch"), component.args.get("dataset")
        if isinstance(arch, str) and arch and "model" not in hints:
            hints["model"] = arch
        if isinstance(dataset, str) and dataset and "dataset" not in hints:
            hints["dataset"] = dataset
    return hints
