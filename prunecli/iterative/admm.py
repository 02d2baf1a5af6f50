"""ADMM before pruning, around an opaque fine-tuning function (AutoCompress's pruning step).

ADMM (Zhang et al. 2018) trains ``W`` with the penalty ``rho/2 ||W - Z + U||^2`` where ``Z`` is
``W + U`` projected onto the allocation (its masks for the task's levels) and ``U`` the running
residual; after a few rounds ``W`` sits close to a pruned tensor, so the final pruning loses little.
The iterative loop's fine-tuner is a user function ``finetuner(model)``, so the penalty cannot be
added to its loss; its gradient ``rho (W - Z + U)`` is added to each weight's gradient by a tensor
hook instead, which is the same update. The ``Z`` / ``U`` state is the engine's
:class:`~prunecli.engine.pruner.Admm` record.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from prunecli.engine.pruner import Admm

#: masks for the task's levels, computed on the model it is given (its weights rank the groups)
Projector = Callable[[nn.Module], Mapping[str, torch.Tensor]]


def project(
    model: nn.Module, shifted: Mapping[str, torch.Tensor], projector: Projector
) -> dict[str, torch.Tensor]:
    """``W + U`` projected onto the allocation: masks chosen on a copy holding ``W + U``, applied."""
    probe = copy.deepcopy(model)
    params = dict(probe.named_parameters())
    with torch.no_grad():
        for name, value in shifted.items():
            params[name].copy_(value)
    masks = projector(probe)
    return {
        name: value * masks[name].to(value.dtype) if name in masks else value.clone()
        for name, value in shifted.items()
    }


def admm_train(
    model: nn.Module,
    names: Iterable[str],
    projector: Projector,
    finetuner: Callable[[nn.Module], object],
    *,
    rho: float = 1e-4,
    iterations: int = 2,
) -> Admm:
    """``iterations`` rounds of: fine-tune with the penalty's gradient; ``Z = proj(W + U)``;
    ``U += W - Z``. The model keeps its dense shape; the caller prunes it afterwards."""
    state = Admm(rho=rho)
    params = dict(model.named_parameters())
    names = [n for n in names if n in params]
    with torch.no_grad():
        state.z.update(project(model, {n: params[n].detach().clone() for n in names}, projector))
        state.u.update({n: torch.zeros_like(params[n]) for n in names})
    handles = []
    for name in names:
        param = params[name]

        def pull(grad: torch.Tensor, name: str = name, param: torch.Tensor = param) -> torch.Tensor:
            return grad + state.rho * (param.detach() - state.z[name] + state.u[name])

        handles.append(param.register_hook(pull))
    try:
        for _ in range(iterations):
            finetuner(model)
            with torch.no_grad():
                shifted = {n: params[n].detach() + state.u[n] for n in names}
                state.z.update(project(model, shifted, projector))
                for n in names:
                    state.u[n] += params[n].detach() - state.z[n]
    finally:
        for handle in handles:
            handle.remove()
    return state
