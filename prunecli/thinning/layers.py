"""Thinning rules for user layer types (the extension point for layers prunecli does not know).

A user layer that stores its weights like a built-in one (a convolution's ``[out, in/groups, *k]``
weight and optional bias, a linear layer's ``[out, in]``, a BatchNorm's per-channel tensors) is
registered *like* that built-in: the dependency graph then follows channels through it, thinning
slices its tensors, and ``attributes`` (default: the built-in's) says which of its attributes to
rewrite from the sliced tensors (``out_channels``, ``in_features``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from prunecli.graph.ops import MODULE_HANDLERS, module_batchnorm, module_conv, module_linear
from prunecli.graph.trace import CUSTOM_LAYERS
from prunecli.thinning.execute import ATTRIBUTE_RULES

#: built-in kind a user layer can behave like -> (graph handler, attribute rule kind)
LIKE: dict[str, Callable[..., Any]] = {
    "conv": module_conv,
    "linear": module_linear,
    "batchnorm": module_batchnorm,
}


def register_custom_layer(
    layer_type: type[nn.Module],
    like: str,
    attributes: Callable[[nn.Module, str], dict[str, Any]] | None = None,
) -> None:
    """Make ``layer_type`` prunable and thinnable like the built-in ``like`` (conv, linear, batchnorm).

    ``attributes(module, kind) -> {attribute: new value}`` is called after its tensors were
    sliced; without it the built-in's rule is used (so the layer needs the same attribute names).
    """
    if like not in LIKE:
        raise ValueError(f"like must be one of {sorted(LIKE)}, got {like!r}")
    kind = f"custom:{layer_type.__module__}.{layer_type.__qualname__}"
    base = LIKE[like]

    def handler(ctx: Any, name: str, module: nn.Module) -> Any:
        result = base(ctx, name, module)
        if name in ctx.flow.module_kinds:
            ctx.flow.module_kinds[name] = kind
        return result

    MODULE_HANDLERS[layer_type] = handler
    CUSTOM_LAYERS.add(layer_type)
    builtin = ATTRIBUTE_RULES["batchnorm" if like == "batchnorm" else like]
    ATTRIBUTE_RULES[kind] = attributes or builtin
