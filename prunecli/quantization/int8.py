"""Convert a model and its :class:`~prunecli.quantization.spec.QuantPlan` into a model that runs in int8.

Backend: PyTorch's own quantized CPU kernels (``torch.backends.quantized.engine``, "x86" = fbgemm /
oneDNN) through the eager quantized modules of ``torch.ao.nn.quantized`` (``Conv*d``, ``Linear``, and
their ``ReLU``-fused forms) and ``torch.ops.quantized.add`` for residual additions. They are built
directly from the plan's scales and zero points: nothing is calibrated here, no observer runs. The
graph is rewritten on a ``torch.fx`` trace, so any traceable model converts, not only known zoo models.

What each node of the traced (BatchNorm-folded) model becomes:

* a conv / linear layer whose plan has 8-bit weights and 8-bit input and output activations:
  the quantized module (int8 weights, float bias), fused with a ReLU that is its only consumer;
  its input is quantized at the plan's input scale where it arrives as float (or at another scale);
* a conv / linear layer with fewer bits (or without activation ranges), or any other planned layer
  with a weight (no int8 kernel for it): a :class:`FakeQuantLayer` -- the float layer holding the
  dequantized weights, its input and output fake-quantized; it computes what the low-bit model
  computes, in float;
* a module without weights whose output the plan rounds (DoReFa's clipped ReLU, say):
  :class:`FakeQuantOutput`, the module in float with its output fake-quantized;
* a residual addition (:class:`~prunecli.models.modules.EltwiseAdd`) listed in the plan with an
  output range, both inputs already int8: ``quantized::add`` (``add_relu`` when a ReLU follows);
* ReLU, pooling, flatten / view, identity and dropout on an int8 tensor: kept, still int8;
* anything else: its int8 inputs are dequantized first, it runs in float.

The model's outputs are always float.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunecli.errors import PruneCliError
from prunecli.export.fold import FoldedPair, fold_batchnorm
from prunecli.models.modules import EltwiseAdd
from prunecli.quantization.packing import PackedCodes, pack, unpack
from prunecli.quantization.spec import LayerQuant, QuantPlan, TensorQuant

#: PyTorch's quantized-tensor API warns that it is deprecated in favour of torchao; see docs/quantization.md
_DEPRECATION = r".*quantized tensor creation functions.*deprecated.*"

#: bits at which a layer runs on int8 kernels; fewer bits run through fake-quant
KERNEL_BITS = 8


@contextmanager
def quantized_engine() -> Iterator[None]:
    """Run with the x86 quantized engine (fbgemm) when the build has it, and without the deprecation warning."""
    engines = torch.backends.quantized.supported_engines
    old = torch.backends.quantized.engine
    wanted = "x86" if "x86" in engines else ("fbgemm" if "fbgemm" in engines else old)
    torch.backends.quantized.engine = wanted
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_DEPRECATION)
            yield
    finally:
        torch.backends.quantized.engine = old


# --------------------------------------------------------------------------- integer codes


def _along(values: torch.Tensor, tq: TensorQuant, ndim: int) -> torch.Tensor:
    """``tq``'s scale or zero point shaped to broadcast over a tensor of ``ndim`` dimensions."""
    values = values.detach().to(torch.float64)
    if tq.axis is None or values.dim() == 0:
        return values.reshape(())
    shape = [1] * ndim
    shape[tq.axis] = -1
    return values.reshape(shape)


def integral(values: torch.Tensor) -> bool:
    """Whether zero points are integers (PyTorch's kernels need them; DoReFa's grids have halves)."""
    return bool(torch.all(values == torch.round(values)))


def weight_codes(weight: torch.Tensor, tq: TensorQuant) -> torch.Tensor:
    """``clamp(round(w / scale + zero_point), qmin, qmax)`` as int32 (the plan's convention)."""
    scale = _along(tq.scale, tq, weight.dim())
    zero = _along(tq.zero_point, tq, weight.dim())
    codes = torch.round(weight.detach().to(torch.float64) / scale + zero)
    return codes.clamp(tq.qmin, tq.qmax).to(torch.int32)


def dequantize_codes(codes: torch.Tensor, tq: TensorQuant) -> torch.Tensor:
    """``(q - zero_point) * scale`` in float32: the values the int8 model really multiplies by."""
    scale = _along(tq.scale, tq, codes.dim())
    zero = _along(tq.zero_point, tq, codes.dim())
    return ((codes.to(torch.float64) - zero) * scale).to(torch.float32)


def _qweight(codes: torch.Tensor, tq: TensorQuant) -> torch.Tensor:
    """The quantized weight tensor holding exactly ``codes`` (signed codes: qint8; unsigned are shifted)."""
    shift = 0 if tq.signed else 128
    data = (codes - shift).to(torch.int8)
    zero = torch.round(tq.zero_point.detach().to(torch.float64)) - shift
    if tq.axis is None or tq.scale.dim() == 0:
        return torch._make_per_tensor_quantized_tensor(data, float(tq.scale), int(zero))
    return torch._make_per_channel_quantized_tensor(
        data, tq.scale.detach().to(torch.float64), zero.to(torch.int64), tq.axis
    )


@dataclass(frozen=True)
class ActQuant:
    """A per-tensor activation range as the unsigned 8-bit kernels (or fake-quant) use it."""

    scale: float
    zero_point: float
    qmin: int
    qmax: int

    @classmethod
    def of(cls, tq: TensorQuant) -> ActQuant:
        if tq.scale.numel() != 1:
            raise PruneCliError(
                "a per-channel activation range cannot be converted (activations are quantized per tensor)",
                hint="quantize activations per tensor (per_channel_wts applies to weights only)",
            )
        return cls(float(tq.scale), float(tq.zero_point), tq.qmin, tq.qmax)

    def unsigned(self) -> ActQuant:
        """The same represented values with codes in 0 .. 2**bits - 1 (what quint8 kernels take)."""
        return ActQuant(self.scale, int(round(self.zero_point)) - self.qmin, 0, self.qmax - self.qmin)

    def fake(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(x / self.scale + self.zero_point), self.qmin, self.qmax)
        return (q - self.zero_point) * self.scale


# --------------------------------------------------------------------------- modules


class FakeQuantLayer(nn.Module):
    """A low-bit layer run in float: input fake-quantized, dequantized weights, output fake-quantized."""

    def __init__(self, layer: nn.Module, input_q: ActQuant | None, output_q: ActQuant | None) -> None:
        super().__init__()
        self.layer = layer
        self.input_q = input_q
        self.output_q = output_q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_q is not None:
            x = self.input_q.fake(x)
        y = self.layer(x)
        return self.output_q.fake(y) if self.output_q is not None else y


class FakeQuantOutput(nn.Module):
    """A module without weights whose output the plan rounds, run in float with its output fake-quantized."""

    def __init__(self, module: nn.Module, output_q: ActQuant) -> None:
        super().__init__()
        self.module = module
        self.output_q = output_q

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.output_q.fake(self.module(*args, **kwargs))


def _conv_args(layer: nn.Module) -> dict[str, Any]:
    return {
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "kernel_size": layer.kernel_size,
        "stride": layer.stride,
        "padding": layer.padding,
        "dilation": layer.dilation,
        "groups": layer.groups,
        "bias": True,
    }


def _linear_args(layer: nn.Module) -> dict[str, Any]:
    return {"in_features": layer.in_features, "out_features": layer.out_features}


@dataclass(frozen=True)
class KernelKind:
    """The quantized module classes for one float layer type, plain and ReLU-fused."""

    plain: type[nn.Module]
    with_relu: type[nn.Module]
    args: Callable[[nn.Module], dict[str, Any]]
    #: extra constructor keywords for the bias flag (Linear spells it differently from LinearReLU)
    plain_extra: dict[str, Any] = field(default_factory=dict)
    relu_extra: dict[str, Any] = field(default_factory=dict)

    def build(self, layer: nn.Module, relu: bool) -> nn.Module:
        extra = self.relu_extra if relu else self.plain_extra
        return (self.with_relu if relu else self.plain)(**self.args(layer), **extra)


#: float layer type -> its int8 kernel modules (the registry a new layer type is added to)
KERNELS: dict[type[nn.Module], KernelKind] = {
    nn.Conv1d: KernelKind(nnq.Conv1d, nniq.ConvReLU1d, _conv_args),
    nn.Conv2d: KernelKind(nnq.Conv2d, nniq.ConvReLU2d, _conv_args),
    nn.Conv3d: KernelKind(nnq.Conv3d, nniq.ConvReLU3d, _conv_args),
    nn.Linear: KernelKind(nnq.Linear, nniq.LinearReLU, _linear_args, {"bias_": True}, {"bias": True}),
}


def _has_weight(module: nn.Module) -> bool:
    return isinstance(getattr(module, "weight", None), torch.Tensor)


def _kernel_ready(layer: nn.Module, lq: LayerQuant) -> bool:
    """8-bit weights and 8-bit input/output ranges on a layer type the kernels cover."""
    kind = type(layer)
    if kind not in KERNELS or lq.weight is None or lq.input is None or lq.output is None:
        return False
    if getattr(layer, "padding_mode", "zeros") != "zeros":
        return False
    tensors = (lq.weight, lq.input, lq.output)
    return all(t.bits == KERNEL_BITS and integral(t.zero_point) for t in tensors)


# --------------------------------------------------------------------------- graph rewrite

_RELUS_MODULES = (nn.ReLU,)
_RELU_FUNCTIONS = {F.relu, torch.relu}
#: module types that accept an int8 tensor and return one with the same scale / zero point
_KEEP_MODULES = (
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Flatten,
)
_KEEP_FUNCTIONS = {
    torch.flatten,
    torch.reshape,
    F.relu,
    torch.relu,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
}
_KEEP_METHODS = {"flatten", "view", "reshape", "relu", "contiguous", "squeeze", "unsqueeze", "size"}
_ADD_FUNCTIONS = {operator.add, torch.add}


class AddLeafTracer(fx.Tracer):
    """Residual additions stay one call, so the plan's entry for them can be found by name."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, EltwiseAdd) or super().is_leaf_module(m, module_qualified_name)


def trace_without_identities(model: nn.Module) -> fx.Graph:
    """The model's graph with calls of identity modules (folded BatchNorms) bypassed.

    Without them a convolution whose BatchNorm was folded is directly followed by its ReLU,
    which is what ReLU fusion (and a range recorded after the ReLU) looks for.
    """
    graph = AddLeafTracer().trace(model)
    modules = dict(model.named_modules())
    for node in list(graph.nodes):
        if node.op == "call_module" and isinstance(modules.get(str(node.target)), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    return graph


def _is_relu(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _RELUS_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target == "relu"


def single_relu_user(node: fx.Node, modules: Mapping[str, nn.Module]) -> fx.Node | None:
    if len(node.users) != 1:
        return None
    (user,) = node.users
    return user if _is_relu(user, modules) and user.args[:1] == (node,) else None


class Int8Model(nn.Module):
    """The executable int8 model (float in, float out) and what became of each planned layer.

    ``forward`` runs under the x86 quantized engine the weights were packed for.
    """

    def __init__(self, graph_module: fx.GraphModule, folded: list[FoldedPair], codes: dict[str, PackedCodes]):
        super().__init__()
        self.graph_module = graph_module
        self.folded = list(folded)
        #: layer name -> stored integer weight codes (int8, or two per byte at 4 bits or fewer)
        self.codes = codes
        self.kernels: list[str] = []
        self.simulated: list[str] = []
        self.float_layers: list[str] = []
        #: the plan of the folded model it was converted with
        self.plan: QuantPlan | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with quantized_engine():
            return self.graph_module(x)


class _Rewriter:
    """Builds the int8 graph node by node, tracking which values are int8 and at which scale."""

    def __init__(self, root: nn.Module, graph: fx.Graph, plan: QuantPlan, codes: Mapping[str, torch.Tensor]):
        self.root = root
        self.old = graph
        self.plan = plan
        self.codes = codes
        self.modules = dict(root.named_modules())
        self.graph = fx.Graph()
        self.env: dict[fx.Node, fx.Node] = {}
        self.qparams: dict[fx.Node, ActQuant] = {}  # new node -> its int8 range (absent: float)
        self.dequantized: dict[fx.Node, fx.Node] = {}
        self.aliases: dict[fx.Node, fx.Node] = {}  # a fused ReLU -> the node that absorbed it
        self.stored: dict[str, PackedCodes] = {}
        self.kernels: list[str] = []
        self.simulated: list[str] = []
        self.float_layers: list[str] = []

    # ---- value helpers
    def _float(self, new: fx.Node) -> fx.Node:
        if new not in self.qparams:
            return new
        if new not in self.dequantized:
            self.dequantized[new] = self.graph.call_method("dequantize", (new,))
        return self.dequantized[new]

    def _int8(self, new: fx.Node, want: ActQuant) -> fx.Node:
        if self.qparams.get(new) == want:
            return new
        node = self.graph.call_function(
            torch.quantize_per_tensor, (self._float(new), want.scale, want.zero_point, torch.quint8)
        )
        self.qparams[node] = want
        return node

    def _lookup(self, old: fx.Node) -> fx.Node:
        return self.env[self.aliases.get(old, old)]

    def _float_args(self, node: fx.Node) -> tuple[Any, Any]:
        convert = lambda n: self._float(self._lookup(n))  # noqa: E731
        return fx.node.map_arg(node.args, convert), fx.node.map_arg(node.kwargs, convert)

    # ---- node kinds
    def run(self, pairs: list[FoldedPair]) -> Int8Model:
        for node in self.old.nodes:
            if node in self.aliases:
                continue
            self.env[node] = self._convert(node)
        self.graph.lint()
        result = Int8Model(fx.GraphModule(self.root, self.graph), pairs, self.stored)
        result.plan = self.plan
        result.kernels, result.simulated, result.float_layers = (
            self.kernels,
            self.simulated,
            self.float_layers,
        )
        return result.eval()

    def _convert(self, node: fx.Node) -> fx.Node:
        if node.op == "placeholder":
            return self.graph.placeholder(node.target, default_value=node.args[0] if node.args else None)
        if node.op == "output":
            args, _ = self._float_args(node)
            return self.graph.output(args[0])
        if node.op == "get_attr":
            return self.graph.get_attr(node.target)
        module = self.modules.get(str(node.target)) if node.op == "call_module" else None
        name = str(node.target)
        if module is not None and name in self.plan.layers and _has_weight(module):
            return self._layer(node, module, self.plan.layers[name])
        if self._is_add(node, module) and name in self.plan.layers:
            added = self._add(node, self.plan.layers[name])
            if added is not None:
                return added
        if module is not None and self._output_only(name, module):
            return self._fake_output(node, module, self.plan.layers[name])
        if self._keeps_int8(node, module):
            first = next((a for a in node.all_input_nodes), None)
            new = self.graph.node_copy(node, self._lookup)
            source = self._lookup(first) if first is not None else None
            if source in self.qparams and not (node.op == "call_method" and node.target == "size"):
                self.qparams[new] = self.qparams[source]
            return new
        args, kwargs = self._float_args(node)
        return self.graph.create_node(node.op, node.target, args, kwargs, node.name)

    @staticmethod
    def _is_add(node: fx.Node, module: nn.Module | None) -> bool:
        return isinstance(module, EltwiseAdd) and len(node.args) == 2 and not node.kwargs

    def _keeps_int8(self, node: fx.Node, module: nn.Module | None) -> bool:
        if node.op == "call_module":
            return isinstance(module, _KEEP_MODULES)
        if node.op == "call_function":
            return node.target in _KEEP_FUNCTIONS
        return node.op == "call_method" and node.target in _KEEP_METHODS

    def _output_only(self, name: str, module: nn.Module) -> bool:
        """A planned module without weights whose output the quantizer rounds (a clipped ReLU, say).

        A BatchNorm's entry describes the layer it is folded into and is not one of these.
        """
        lq = self.plan.layers.get(name)
        if lq is None or lq.output is None or isinstance(module, nn.Identity | _BatchNorm | EltwiseAdd):
            return False
        return not _has_weight(module)

    def _fake_output(self, node: fx.Node, module: nn.Module, lq: LayerQuant) -> fx.Node:
        name = str(node.target)
        self.root.set_submodule(name, FakeQuantOutput(module, ActQuant.of(lq.output)))
        self.simulated.append(name)
        args, kwargs = self._float_args(node)
        return self.graph.call_module(name, args, kwargs)

    def _layer(self, node: fx.Node, layer: nn.Module, lq: LayerQuant) -> fx.Node:
        name = str(node.target)
        if lq.weight is None:
            self.float_layers.append(name)
            args, kwargs = self._float_args(node)
            return self.graph.call_module(name, args, kwargs)
        codes = self.codes.get(name)
        if codes is None:
            codes = weight_codes(layer.weight, lq.weight)
        self.stored[name] = pack(codes, lq.weight.bits, lq.weight.signed)
        weight = dequantize_codes(codes, lq.weight)
        if _kernel_ready(layer, lq):
            return self._kernel(node, layer, lq, codes)
        simulated = copy.deepcopy(layer)
        with torch.no_grad():
            simulated.weight.copy_(weight)
        fq = FakeQuantLayer(
            simulated,
            ActQuant.of(lq.input) if lq.input is not None else None,
            ActQuant.of(lq.output) if lq.output is not None else None,
        )
        self.root.set_submodule(name, fq)
        self.simulated.append(name)
        args, kwargs = self._float_args(node)
        return self.graph.call_module(name, args, kwargs)

    def _kernel(self, node: fx.Node, layer: nn.Module, lq: LayerQuant, codes: torch.Tensor) -> fx.Node:
        name = str(node.target)
        relu = single_relu_user(node, self.modules)
        quantized = KERNELS[type(layer)].build(layer, relu is not None)
        bias = layer.bias.detach().clone() if layer.bias is not None else None
        quantized.set_weight_bias(_qweight(codes, lq.weight), bias)
        out = ActQuant.of(lq.output).unsigned()
        quantized.scale = out.scale
        quantized.zero_point = out.zero_point
        self.root.set_submodule(name, quantized)
        source = self._lookup(node.args[0])
        new = self.graph.call_module(name, (self._int8(source, ActQuant.of(lq.input).unsigned()),))
        self.qparams[new] = out
        if relu is not None:
            self.aliases[relu] = node
        self.kernels.append(name)
        return new

    def _add(self, node: fx.Node, lq: LayerQuant) -> fx.Node | None:
        inputs = [self._lookup(a) for a in node.args]
        ready = lq.output is not None and lq.output.bits == KERNEL_BITS and integral(lq.output.zero_point)
        if not ready or not all(i in self.qparams for i in inputs):
            return None
        out = ActQuant.of(lq.output).unsigned()
        relu = single_relu_user(node, self.modules)
        op = torch.ops.quantized.add_relu if relu is not None else torch.ops.quantized.add
        new = self.graph.call_function(op, (*inputs, out.scale, out.zero_point))
        self.qparams[new] = out
        if relu is not None:
            self.aliases[relu] = node
        self.kernels.append(str(node.target))
        return new


# --------------------------------------------------------------------------- entry points


def _check_plan(model: nn.Module, plan: QuantPlan) -> None:
    names = dict(model.named_modules())
    missing = [name for name in plan.layers if name not in names]
    if missing:
        raise PruneCliError(
            f"the quantization plan names layers the model does not have: {', '.join(missing[:8])}",
            hint="convert the model the plan was made for (the same architecture and thinning)",
        )


def convert_folded(
    folded: nn.Module,
    plan: QuantPlan,
    pairs: list[FoldedPair],
    *,
    codes: Mapping[str, torch.Tensor] | None = None,
) -> Int8Model:
    """Convert an already BatchNorm-folded eval-mode model (``folded`` is changed; pass a copy).

    ``codes``: stored integer weights by layer name, used instead of re-quantizing the float
    weights (a reloaded checkpoint gives back exactly the model it was saved from).
    """
    _check_plan(folded, plan)
    with quantized_engine():
        graph = trace_without_identities(folded)
        return _Rewriter(folded, graph, plan, codes or {}).run(pairs)


@dataclass
class FoldedForInt8:
    """The model with BatchNorms folded where the int8 kernels run their producer, and the plan for it."""

    model: nn.Module
    plan: QuantPlan
    pairs: list[FoldedPair]
    codes: dict[str, torch.Tensor]


def _norm_factors(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel ``(f, shift)`` of an eval-mode BatchNorm: ``y = f * x + shift``."""
    f = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
    return f, norm.bias.detach().double() - norm.running_mean.double() * f


def _fold_codes(codes: torch.Tensor, tq: TensorQuant, f: torch.Tensor) -> tuple[TensorQuant, torch.Tensor]:
    """Integer codes and per-channel range of ``f * weight``, exactly: the same integers, rescaled.

    ``(q - z) * s * f`` equals ``(q' - z') * s * |f|`` with ``q' = q, z' = z`` where ``f >= 0`` and
    ``q' = qmin + qmax - q, z' = qmin + qmax - z`` where ``f < 0`` (still within ``qmin .. qmax``).
    """
    channels = codes.shape[0]
    scale = (
        tq.scale.detach().double().reshape(-1).expand(channels)
        if tq.scale.numel() == 1
        else tq.scale.double()
    )
    zero = (
        tq.zero_point.detach().double().reshape(-1).expand(channels)
        if tq.zero_point.numel() == 1
        else tq.zero_point.double()
    )
    flip = f < 0
    mirror = float(tq.qmin + tq.qmax)
    shape = (-1,) + (1,) * (codes.dim() - 1)
    new_codes = torch.where(flip.reshape(shape), int(mirror) - codes, codes)
    new_zero = torch.where(flip, mirror - zero, zero)
    new_scale = torch.where(f == 0, scale, scale * f.abs())
    new_codes = torch.where(
        (f == 0).reshape(shape), torch.round(new_zero).to(codes.dtype).reshape(shape), new_codes
    )
    return TensorQuant(tq.bits, tq.signed, new_scale.float(), new_zero.float(), 0), new_codes


def _carried_range(out: TensorQuant, f: torch.Tensor, shift: torch.Tensor, relu: bool) -> TensorQuant:
    """A per-tensor range covering the layer's output range after the BatchNorm's affine map (and ReLU)."""
    act = ActQuant.of(out)
    lo, hi = (act.qmin - act.zero_point) * act.scale, (act.qmax - act.zero_point) * act.scale
    low = float(torch.minimum(f * lo, f * hi).add(shift).min())
    high = float(torch.maximum(f * lo, f * hi).add(shift).max())
    low, high = (0.0 if relu else min(low, 0.0)), max(high, 0.0)
    levels = 2**out.bits - 1
    scale = (high - low) / levels if high > low else 1.0
    return TensorQuant(out.bits, False, torch.tensor(scale), torch.tensor(float(round(-low / scale))), None)


def fold_for_int8(model: nn.Module, plan: QuantPlan, example_input: torch.Tensor) -> FoldedForInt8:
    """Fold BatchNorms and rewrite the plan for the folded layers (``model`` itself is unchanged).

    The plan describes ``model`` as given. A BatchNorm is folded into a layer the plan leaves in
    float, and into a layer the int8 kernels will run: that layer's integer codes are computed from
    the plan on the unfolded weights and rescaled per channel (exactly), and its output range is the
    BatchNorm's own plan entry when there is one, else the layer's output range carried through the
    BatchNorm (and a following ReLU). A layer that runs through fake-quant keeps its BatchNorm after
    it, as the quantizer simulated it.
    """
    result = fold_batchnorm(model, example_input)
    originals = dict(model.named_modules())
    graph = AddLeafTracer().trace(model)
    relu_after = {
        str(n.target) for n in graph.nodes if n.op == "call_module" and single_relu_user(n, originals)
    }
    folded = FoldedForInt8(result.model, QuantPlan(dict(plan.layers)), [], {})
    for pair in result.pairs:
        lq = plan.layers.get(pair.layer)
        layer, norm = originals[pair.layer], originals[pair.norm]
        if lq is not None and (lq.weight is None or not _kernel_ready(layer, lq)):
            folded.model.set_submodule(pair.layer, copy.deepcopy(layer).eval())
            folded.model.set_submodule(pair.norm, copy.deepcopy(norm).eval())
            continue
        folded.pairs.append(pair)
        if lq is None:
            continue
        f, shift = _norm_factors(norm)
        weight, codes = _fold_codes(weight_codes(layer.weight, lq.weight), lq.weight, f)
        own = plan.layers.get(pair.norm)
        output = own.output if own is not None and own.output is not None else None
        if output is None:
            output = _carried_range(lq.output, f, shift, pair.norm in relu_after)
        folded.plan.add(dataclasses.replace(lq, weight=weight, output=output))
        folded.codes[pair.layer] = codes
    return folded


def convert_to_int8(model: nn.Module, plan: QuantPlan, example_input: torch.Tensor) -> Int8Model:
    """BatchNorm folded first (:func:`fold_for_int8`), then every planned layer converted (``model`` unchanged).

    The result's ``plan`` attribute is the plan of the folded model (what an int8 checkpoint stores).
    """
    folded = fold_for_int8(model, plan, example_input)
    int8 = convert_folded(folded.model, folded.plan, folded.pairs, codes=folded.codes)
    int8.plan = folded.plan
    return int8


def refold(model: nn.Module, pairs: list[FoldedPair]) -> nn.Module:
    """The structure ``fold_batchnorm`` left (each folded layer with a bias, its BatchNorm an identity).

    Used when rebuilding a saved int8 model: the folded weights come from the file, so only the
    shapes are recreated here.
    """
    for pair in pairs:
        layer = model.get_submodule(pair.layer)
        if layer.bias is None:
            width = layer.weight.shape[0]
            layer.bias = nn.Parameter(torch.zeros(width, dtype=layer.weight.dtype))
        model.set_submodule(pair.norm, nn.Identity())
    return model.eval()


def unpacked_codes(stored: Mapping[str, PackedCodes]) -> dict[str, torch.Tensor]:
    """Layer name -> int32 codes of stored weights."""
    return {name: unpack(codes) for name, codes in stored.items()}


def thin_plan(plan: QuantPlan, steps: Mapping[str, list[tuple[int, list[int]]]]) -> QuantPlan:
    """The plan of a model thinned after it was made: per-channel weight ranges keep the kept channels.

    ``steps``: a thinning recipe's ``tensors`` (tensor name -> [(dim, kept indices), ...]).
    Per-tensor ranges need no change; activation ranges are per tensor.
    """
    thinned = QuantPlan()
    for name, layer in plan.layers.items():
        weight = layer.weight
        if weight is not None and weight.axis is not None and weight.scale.dim() == 1:
            scale, zero = weight.scale, weight.zero_point
            for dim, kept in steps.get(f"{name}.weight", []):
                if dim == weight.axis:
                    index = torch.tensor(kept, dtype=torch.long)
                    scale, zero = scale[index], zero[index]
            weight = TensorQuant(weight.bits, weight.signed, scale, zero, weight.axis)
        thinned.add(dataclasses.replace(layer, weight=weight))
    return thinned
