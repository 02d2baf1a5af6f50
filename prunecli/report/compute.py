"""Per-layer compute summary (Distiller's ``--summary compute``), measured with forward hooks.

MACs follow Distiller's definition so published figures are comparable: a convolution costs
``volume(OFM) * C_in / groups * prod(kernel)`` and a linear layer ``in_features * out_features``
per position, per sample, biases ignored.

Attention modules that apply their weights functionally (``nn.MultiheadAttention``, torchvision
Swin's window attention) never run their projection modules' own ``forward``, so a hook on
``nn.Linear`` misses them. They are counted here as the standard counters do (fvcore,
Torch-Pruning's ``count_ops_and_params``): one row per projection (tokens x in x out) and one
``attention`` row for the two matrix products, ``q @ k^T`` and ``attn @ v``, each
``L_q x L_k x width`` (``width`` = heads x head_dim of q and of v). Softmax, scaling and the
relative-position bias are not counted (they are not multiply-accumulates of a weight).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class LayerCompute:
    name: str
    type: str
    attrs: str
    ifm: tuple[int, ...]
    ofm: tuple[int, ...]
    weights_volume: int
    macs: int
    effective_macs: int  # MACs counting only non-zero weights (masked, unthinned layers)
    #: the parameter whose shape sets this row's cost ("" = ``NAME.weight``)
    weight: str = ""
    #: how pruning shrinks the row: "layer" (kept weights x live input channels) or "rows" (only the
    #: weight's kept output rows: the attention products, which have no weight of their own)
    scaling: str = "layer"

    def __post_init__(self) -> None:
        if not self.weight:
            self.weight = f"{self.name}.weight"

    @property
    def ifm_volume(self) -> int:
        return math.prod(self.ifm)

    @property
    def ofm_volume(self) -> int:
        return math.prod(self.ofm)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ifm"], d["ofm"] = list(self.ifm), list(self.ofm)
        d["ifm_volume"], d["ofm_volume"] = self.ifm_volume, self.ofm_volume
        return d


def _layer_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[str, int, int]:
    weight = module.weight
    density = float((weight != 0).sum()) / max(weight.numel(), 1)
    if isinstance(module, _CONV):
        kernel = math.prod(module.kernel_size)
        per_sample_out = math.prod(out.shape[1:])
        macs = per_sample_out * (module.in_channels // module.groups) * kernel
        attrs = f"k={tuple(module.kernel_size)}, s={tuple(module.stride)}, g={module.groups}"
    else:
        positions = math.prod(out.shape[1:-1]) if out.dim() > 2 else 1
        macs = positions * module.in_features * module.out_features
        attrs = ""
    return attrs, macs, round(macs * density)


def _density(weight: torch.Tensor) -> float:
    return float((weight != 0).sum()) / max(weight.numel(), 1)


def _projection(name: str, weight_name: str, weight: torch.Tensor, tokens: int, ifm, ofm) -> LayerCompute:
    macs = tokens * weight.numel()
    return LayerCompute(
        name, "Linear", "functional", tuple(ifm), tuple(ofm), weight.numel(), macs,
        round(macs * _density(weight)), weight_name,
    )  # fmt: skip


def _products(
    name: str, weight_name: str, q_tokens: int, k_tokens: int, q_width: int, v_width: int, ifm, ofm
):
    macs = q_tokens * k_tokens * (q_width + v_width)
    return LayerCompute(
        name, "AttentionProducts", "q@k^T, attn@v", tuple(ifm), tuple(ofm), 0, macs, macs, weight_name, "rows"
    )


def _mha_rows(
    name: str, module: nn.MultiheadAttention, args: tuple, kwargs: dict, output
) -> list[LayerCompute]:
    """``nn.MultiheadAttention``: q/k/v projections, out projection and the two attention products."""
    query = args[0] if args else kwargs["query"]
    key = args[1] if len(args) > 1 else kwargs.get("key", query)
    out = output[0] if isinstance(output, tuple) else output
    token_dim = 1 if module.batch_first and query.dim() == 3 else 0
    lq, lk = int(query.shape[token_dim]), int(key.shape[token_dim])
    rows: list[LayerCompute] = []
    if module.in_proj_weight is not None:
        w = module.in_proj_weight
        third = w.shape[0] // 3
        macs = (lq + 2 * lk) * third * w.shape[1]  # q from the query's tokens, k and v from the key's
        rows.append(
            LayerCompute(
                f"{name}.in_proj", "Linear", "functional, q/k/v", tuple(query.shape), tuple(out.shape), w.numel(),
                macs, round(macs * _density(w)), f"{name}.in_proj_weight",
            )
        )  # fmt: skip
        q_width = v_width = third
    else:
        for part, tokens in (("q", lq), ("k", lk), ("v", lk)):
            w = getattr(module, f"{part}_proj_weight")
            rows.append(
                _projection(
                    f"{name}.{part}_proj", f"{name}.{part}_proj_weight", w, tokens, query.shape, out.shape
                )
            )
        q_width, v_width = module.q_proj_weight.shape[0], module.v_proj_weight.shape[0]
    proj = module.out_proj.weight
    rows.append(_projection(f"{name}.out_proj", f"{name}.out_proj.weight", proj, lq, out.shape, out.shape))
    weight_name = f"{name}.in_proj_weight" if module.in_proj_weight is not None else f"{name}.q_proj_weight"
    rows.append(_products(f"{name}.attention", weight_name, lq, lk, q_width, v_width, query.shape, out.shape))
    return rows


def _window_rows(name: str, module: nn.Module, args: tuple, kwargs: dict, output) -> list[LayerCompute]:
    """torchvision Swin's window attention on an ``[N, H, W, C]`` map padded to whole windows."""
    x = args[0] if args else kwargs["x"]
    wh, ww = module.window_size
    height, width = -(-x.shape[1] // wh) * wh, -(-x.shape[2] // ww) * ww
    tokens, window = height * width, wh * ww
    qkv, proj = module.qkv.weight, module.proj.weight
    return [
        _projection(f"{name}.qkv", f"{name}.qkv.weight", qkv, tokens, x.shape, output.shape),
        _projection(f"{name}.proj", f"{name}.proj.weight", proj, tokens, output.shape, output.shape),
        _products(f"{name}.attention", f"{name}.qkv.weight", tokens, window, qkv.shape[0] // 3, qkv.shape[0] // 3, x.shape, output.shape),
    ]  # fmt: skip


#: module types that apply their weights functionally -> the rows their forward costs
FUNCTIONAL: list[tuple[Callable[[nn.Module], bool], Callable[..., list[LayerCompute]]]] = [
    (lambda m: isinstance(m, nn.MultiheadAttention), _mha_rows),
    (
        lambda m: (
            type(m).__name__ in ("ShiftedWindowAttention", "ShiftedWindowAttentionV2")
            and type(m).__module__.startswith("torchvision")
        ),
        _window_rows,
    ),
]


def _functional_rows(module: nn.Module) -> Callable[..., list[LayerCompute]] | None:
    return next((rows for matches, rows in FUNCTIONAL if matches(module)), None)


def compute_summary(model: nn.Module, example_input: torch.Tensor) -> list[LayerCompute]:
    """Run one forward pass (batch of one sample) and record every conv/linear layer, and the
    projections and products of attention modules that apply their weights functionally."""
    rows: list[LayerCompute] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def functional_hook(module: nn.Module, args, kwargs, output) -> None:
        rows.extend(_functional_rows(module)(names[module], module, args, kwargs, output))

    def hook(module: nn.Module, inputs, output) -> None:
        inp = inputs[0]
        attrs, macs, eff = _layer_cost(module, inp, output)
        rows.append(
            LayerCompute(
                name=names[module],
                type=type(module).__name__,
                attrs=attrs,
                ifm=tuple(inp.shape),
                ofm=tuple(output.shape),
                weights_volume=module.weight.numel(),
                macs=macs,
                effective_macs=eff,
            )
        )

    for module in model.modules():
        if isinstance(module, (*_CONV, nn.Linear)):
            handles.append(module.register_forward_hook(hook))
        elif _functional_rows(module) is not None:
            handles.append(module.register_forward_hook(functional_hook, with_kwargs=True))
    observe_one_sample(model, example_input, handles)
    return rows


def observe_one_sample(model: nn.Module, example_input: torch.Tensor, handles: list) -> None:
    """One eval-mode, no-grad forward pass of one sample; then ``handles`` (forward hooks) go."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def total_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    return sum(r.macs for r in compute_summary(model, example_input))


def macs_by_weight(rows: list[LayerCompute]) -> dict[str, float]:
    """Parameter name -> the MACs of every row it sets (an attention's projection and products)."""
    totals: dict[str, float] = {}
    for r in rows:
        totals[r.weight] = totals.get(r.weight, 0.0) + r.macs
    return totals
