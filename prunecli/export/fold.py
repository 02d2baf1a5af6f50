"""BatchNorm folding for inference: ``conv -> BN`` and ``linear -> BN`` become one layer.

In eval mode a BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``,
so when it directly consumes a convolution's (or linear layer's) output it can be merged into that
layer's weight and bias. The folded model computes the same function with one layer fewer per pair,
which is what deployment runtimes expect (and what a latency measurement of a deployed model should see).

Pairs are found on a torch.fx trace of the model (never from layer names): a pair is folded only when
the layer's output feeds the BatchNorm and nothing else, each module is called exactly once, and the
BatchNorm normalises the layer's output channels. Anything else is left as it is.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from prunecli.errors import GraphError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FoldedPair:
    """One folded pair: ``layer`` absorbed the BatchNorm ``norm`` (now an identity)."""

    layer: str
    norm: str


@dataclass
class FoldResult:
    """The folded eval-mode copy and what was folded; ``skipped`` says why folding was not attempted."""

    model: nn.Module
    pairs: list[FoldedPair] = field(default_factory=list)
    skipped: str | None = None

    def to_dict(self) -> dict:
        return {
            "folded": [[p.layer, p.norm] for p in self.pairs],
            "count": len(self.pairs),
            "skipped": self.skipped,
        }


def _foldable_norm(module: nn.Module) -> bool:
    return isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None


def _output_ranks(model: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, int]:
    """Rank of each named linear layer's output on ``example`` (BatchNorm1d folds only on (N, C))."""
    ranks: dict[str, int] = {}
    modules = dict(model.named_modules())

    def record(name: str):
        def hook(_module: nn.Module, _args: tuple, out: object) -> None:  # returns None: output unchanged
            if torch.is_tensor(out):
                ranks.setdefault(name, out.dim())

        return hook

    forward_with_hooks(model, example, [modules[name].register_forward_hook(record(name)) for name in names])
    return ranks


def forward_with_hooks(model: nn.Module, example: torch.Tensor, handles: list) -> None:
    """One no-grad forward pass of ``model`` for the hooks behind ``handles``, which are then removed."""
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()


def _candidate_pairs(model: nn.Module, graph: fx.Graph) -> list[tuple[str, str]]:
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        layer = modules.get(str(node.target))
        if not isinstance(layer, (*_CONVS, nn.Linear)) or len(node.users) != 1:
            continue
        (user,) = node.users
        norm = modules.get(str(user.target)) if user.op == "call_module" else None
        if norm is None or calls[user.target] != 1 or not _foldable_norm(norm):
            continue
        if user.args[:1] != (node,) or len(user.args) != 1 or user.kwargs:
            continue
        width = layer.out_channels if isinstance(layer, _CONVS) else layer.out_features
        if norm.num_features != width:
            continue
        pairs.append((str(node.target), str(user.target)))
    return pairs


def fold_batchnorm(model: nn.Module, example_input: torch.Tensor) -> FoldResult:
    """Return an eval-mode copy of ``model`` with every foldable BatchNorm merged into its producer.

    ``model`` itself is not changed. ``example_input`` (one batch) is used to check that a linear
    layer's output is (N, C), the only layout in which a following BatchNorm1d normalises its features.
    """
    from prunecli.graph.trace import trace

    folded = copy.deepcopy(model).eval()
    try:
        traced, _notes = trace(folded)
    except GraphError as exc:
        return FoldResult(folded, skipped=f"the model cannot be traced: {exc.message}")
    pairs = _candidate_pairs(folded, traced.graph)
    modules = dict(folded.named_modules())
    linears = [layer for layer, _ in pairs if isinstance(modules[layer], nn.Linear)]
    ranks = _output_ranks(folded, linears, example_input) if linears else {}
    done: list[FoldedPair] = []
    for layer_name, norm_name in pairs:
        layer, norm = modules[layer_name], modules[norm_name]
        if isinstance(layer, nn.Linear):
            if ranks.get(layer_name) != 2:
                continue
            fused: nn.Module = fuse_linear_bn_eval(layer, norm)
        else:
            fused = fuse_conv_bn_eval(layer, norm)
        folded.set_submodule(layer_name, fused)
        folded.set_submodule(norm_name, nn.Identity())
        done.append(FoldedPair(layer_name, norm_name))
    return FoldResult(folded, done)
