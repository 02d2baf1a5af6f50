"""``fold_batchnorm``: rank a convolution on ``w * gamma / sqrt(running_var + eps)`` of its BatchNorm.

The BatchNorm is the one that directly consumes the convolution's output, found on a torch.fx
trace of the model; when the model cannot be traced, a BatchNorm2d registered right after the
convolution with matching ``num_features`` is used instead.
"""

from __future__ import annotations

import torch
from torch import nn


def _from_fx(model: nn.Module) -> dict[str, str] | None:
    try:
        import torch.fx as fx

        graph = fx.symbolic_trace(model).graph
    except Exception:  # untraceable models fall back to registration order
        return None
    modules = dict(model.named_modules())
    pairs: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Conv2d):
            continue
        users = list(node.users)
        if (
            len(users) == 1
            and users[0].op == "call_module"
            and isinstance(modules.get(users[0].target), nn.BatchNorm2d)
        ):
            pairs[node.target] = users[0].target
    return pairs


def _from_order(model: nn.Module) -> dict[str, str]:
    pairs: dict[str, str] = {}
    previous: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and previous is not None:
            conv_name, conv = previous
            if isinstance(conv, nn.Conv2d) and conv.out_channels == module.num_features:
                pairs[conv_name] = name
        if not list(module.children()):
            previous = (name, module)
    return pairs


class BatchNormFolder:
    """Callable ``(param_name, param) -> tensor to rank``: folded weights for Conv2d->BN pairs."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        found = _from_fx(model)
        self.pairs = found if found is not None else _from_order(model)

    def __call__(self, param_name: str, param: torch.Tensor) -> torch.Tensor:
        if not param_name.endswith(".weight"):
            return param
        conv_name = param_name[: -len(".weight")]
        bn_name = self.pairs.get(conv_name)
        if bn_name is None:
            return param
        bn = self.model.get_submodule(bn_name)
        with torch.no_grad():
            gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
            scale = gamma / torch.sqrt(bn.running_var + bn.eps)
            return param.detach() * scale.view(-1, 1, 1, 1)
