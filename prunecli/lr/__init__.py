"""Learning-rate schedulers by Distiller class name: every torch scheduler plus Distiller's two.

Distiller imports ``torch.optim.lr_scheduler`` first and its own module second, so its
``PolynomialLR(t_max, power)`` shadows torch's class of the same name; we keep that.
"""

from __future__ import annotations

import inspect
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch.optim.lr_scheduler as torch_lr
from torch.optim import Optimizer

from prunecli.lr.distiller_lr import MultiStepMultiGammaLR, PolynomialLR

LR_SCHEDULERS: dict[str, type] = {
    name: cls
    for name, cls in vars(torch_lr).items()
    if inspect.isclass(cls)
    and not name.startswith("_")
    and name != "LRScheduler"
    and (issubclass(cls, torch_lr.LRScheduler) or cls is torch_lr.ReduceLROnPlateau)
}
LR_SCHEDULERS["PolynomialLR"] = PolynomialLR
LR_SCHEDULERS["MultiStepMultiGammaLR"] = MultiStepMultiGammaLR


def build_lr_scheduler(name: str, optimizer: Optimizer, args: Mapping[str, Any]) -> Any:
    """Instantiate a scheduler by class name; raises KeyError/TypeError/ValueError on bad input."""
    cls = LR_SCHEDULERS[name]
    return cls(optimizer, **dict(args))


def step_to_epoch(scheduler: Any, epoch: int, metrics: Mapping[str, float] | None = None) -> None:
    """Distiller's ``LRPolicy``: ``step(epoch=current+1)``; ReduceLROnPlateau gets metrics[mode]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if isinstance(scheduler, torch_lr.ReduceLROnPlateau):
            if not metrics or scheduler.mode not in metrics:
                raise ValueError(
                    f"ReduceLROnPlateau (mode {scheduler.mode!r}) needs metrics[{scheduler.mode!r}] at epoch end"
                )
            scheduler.step(metrics[scheduler.mode])
            scheduler.last_epoch = epoch
        else:
            scheduler.step(epoch)


def plain_state_dict(scheduler: Any) -> dict[str, Any]:
    """The scheduler's state with Counters (MultiStepLR's milestones) as plain dicts.

    Checkpoints load with ``torch.load(weights_only=True)``, which admits no Counter.
    """
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in scheduler.state_dict().items()}


def load_plain_state_dict(scheduler: Any, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`plain_state_dict`: dicts become Counters where the scheduler keeps one."""
    current = scheduler.state_dict()
    scheduler.load_state_dict(
        {k: Counter(v) if isinstance(current.get(k), Counter) else v for k, v in state.items()}
    )


__all__ = [
    "LR_SCHEDULERS",
    "MultiStepMultiGammaLR",
    "PolynomialLR",
    "build_lr_scheduler",
    "load_plain_state_dict",
    "plain_state_dict",
    "step_to_epoch",
]
