"""torch.fx tracing with a fallback: modules that cannot be traced become opaque leaves.

Dependencies always come from the traced data flow, never from layer names. When symbolic
tracing fails inside a sub-module (data-dependent control flow, unsupported Python), that
module is retried as a leaf: the rest of the model is still analysed, and the leaf's channels are
kept. A failure in the top-level ``forward`` raises :class:`GraphError` naming the construct.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from numbers import Number
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from prunecli.errors import GraphError

MAX_LEAF_RETRIES = 16


#: user layer types with a registered handler (:func:`prunecli.thinning.register_custom_layer`):
#: traced as one call, so their handler sees the module rather than its inner operations
CUSTOM_LAYERS: set[type] = set()


class _Tracer(fx.Tracer):
    """Records which module is being traced so a failure can name it."""

    def __init__(self, extra_leaves: set[str]) -> None:
        super().__init__()
        self.extra_leaves = extra_leaves
        self.stack: list[str] = []
        self.failed_in: str | None = None  # innermost module whose tracing raised

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.extra_leaves or type(m) in CUSTOM_LAYERS:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        name = self.path_of_module(m)
        self.stack.append(name)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None and name and name not in self.extra_leaves:
                self.failed_in = name
            raise
        finally:
            self.stack.pop()


@dataclass
class Traced:
    """A model and its fx graph, without the generated code of a GraphModule (costly to compile)."""

    root: nn.Module
    graph: fx.Graph


def trace(model: nn.Module) -> tuple[Traced, list[str]]:
    """Symbolically trace ``model``; returns the graph and notes on opaque leaves."""
    leaves: set[str] = set()
    notes: list[str] = []
    for _ in range(MAX_LEAF_RETRIES):
        tracer = _Tracer(leaves)
        try:
            graph = tracer.trace(model)
        except Exception as exc:  # tracing errors come in many types (TraceError, TypeError, ...)
            where = tracer.failed_in
            if where is None:
                raise GraphError(
                    f"cannot trace the model's top-level forward: {type(exc).__name__}: {exc}",
                    hint="torch.fx needs a forward without data-dependent control flow (if/for on "
                    "tensor values); move such code into a sub-module (it is then kept whole) or "
                    "rewrite it with torch.where",
                ) from exc
            leaves.add(where)
            notes.append(
                f"module '{where}' could not be traced ({type(exc).__name__}: {_first_line(exc)}); "
                "it is kept whole and its channels are not pruned"
            )
            continue
        return Traced(tracer.root, graph), notes
    raise GraphError(
        f"cannot trace the model: more than {MAX_LEAF_RETRIES} sub-modules failed to trace",
        hint="remove data-dependent control flow from the model's forward methods",
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once and keeps only each node's output shape (not the tensors)."""

    def __init__(self, traced: Traced) -> None:
        super().__init__(traced.root, garbage_collect_values=True, graph=traced.graph)
        self.shapes: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as exc:
            raise GraphError(
                f"running the traced model failed at node '{n.name}' ({n.op} {n.target}): "
                f"{type(exc).__name__}: {_first_line(exc)}",
                hint="check that the example input's shape matches the model: --input-shape for "
                "thin, deps and export; for run, the data set's image size (with --dataset fake: "
                "--set dataset_options.image_size=224)",
            ) from exc
        self.shapes[n.name] = _shape_of(result)
        return result


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return tuple(_shape_of(v) for v in value)
    return None


def record_shapes(gm: Traced, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """Output shape of every node for ``inputs`` (eval mode, no autograd).

    Shapes are first computed on the meta device (no arithmetic, no memory for activations);
    models with ops meta tensors cannot run fall back to one real forward pass.
    """
    try:
        return _record_on_meta(gm, inputs)
    except Exception:  # any op without a meta kernel: use real tensors
        pass
    recorder = _ShapeRecorder(gm)
    with torch.no_grad():
        recorder.run(*inputs)
    return recorder.shapes


def _record_on_meta(gm: Traced, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    from torch.nn.utils.stateless import _reparametrize_module

    state = {k: torch.empty_like(v, device="meta") for k, v in gm.root.state_dict(keep_vars=True).items()}
    meta_inputs = tuple(torch.empty_like(t, device="meta") for t in inputs)
    recorder = _MetaRecorder(gm)
    with torch.no_grad(), _reparametrize_module(gm.root, state):
        recorder.run(*meta_inputs)
    return recorder.shapes


#: modules whose output has their input's shape: on meta tensors their kernels run through slow
#: Python decompositions (BatchNorm above all), so the recorder passes the input through instead
SHAPE_PRESERVING: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Identity,
)


#: element-wise functions whose meta kernels are slow Python references: the recorder computes
#: their result's shape and dtype directly (broadcasting and type promotion, as the kernels do)
ELEMENTWISE_BINARY = frozenset(
    {
        operator.add, operator.sub, operator.mul, operator.truediv,
        operator.iadd, operator.isub, operator.imul, operator.itruediv,
        torch.add, torch.sub, torch.mul, torch.div,
    }
)  # fmt: skip
ELEMENTWISE_UNARY = frozenset(
    {F.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.relu, torch.sigmoid, torch.tanh}
)


def _fast_elementwise(target: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The meta result of a simple element-wise call, or None when the general kernel must run."""
    if target in ELEMENTWISE_UNARY:
        if len(args) == 1 and isinstance(args[0], torch.Tensor) and set(kwargs) <= {"inplace"}:
            return args[0]
        return None
    if target not in ELEMENTWISE_BINARY or kwargs or len(args) != 2:
        return None
    if not all(isinstance(a, (torch.Tensor, Number)) for a in args):
        return None
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors:
        return None
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    a, b = args
    dtype = torch.result_type(a, b)
    if target in (operator.truediv, operator.itruediv, torch.div) and not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return torch.empty(shape, dtype=dtype, device="meta")


class _MetaRecorder(fx.Interpreter):
    def __init__(self, traced: Traced) -> None:
        super().__init__(traced.root, garbage_collect_values=True, graph=traced.graph)
        self.shapes: dict[str, Any] = {}

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        passes_through = isinstance(module, SHAPE_PRESERVING) and not kwargs and len(args) == 1
        if passes_through and isinstance(args[0], torch.Tensor):
            return args[0]
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        fast = _fast_elementwise(target, args, kwargs)
        return fast if fast is not None else super().call_function(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.shapes[n.name] = _shape_of(result)
        return result
