"""NNI's quantizers as presets: Naive, QAT, DoReFa, BNN and LSQ configured by an NNI ``config_list``.

An entry of the list selects modules and says what to round::

    {"quant_types": ["weight", "output"], "quant_bits": {"weight": 8, "output": 8},
     "op_types": ["Conv2d", "Linear"], "op_names": ["features.0"], "exclude": false}

``op_types`` are class names (``"default"``: Conv1d/2d/3d and Linear), ``op_names`` module names;
an entry with both selects modules matching both. As in NNI, a module takes the *last* entry that
selects it, and an entry with ``exclude: true`` leaves the modules it selects in float.
``quant_bits`` is one bit width for every type or one per type.

In a schedule the preset is the ``NNIQuantizer`` class (``method:`` and ``config_list:``); from
Python, :func:`quantize`. :func:`compile_config_list` turns entries into per-module rules and is
what a reader of NNI's own configuration files calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .fakequant import (
    DorefaWeight,
    LsqQuant,
    NaiveWeight,
    RangeLinearActivation,
    RangeLinearWeight,
    SignQuant,
    TensorFakeQuant,
)
from .linear import ASYMMETRIC_UNSIGNED
from .quantizers import QBits, Quantizer, QuantizerError

QUANT_TYPES = ("weight", "input", "output")
#: the layers ``op_types: [default]`` selects (NNI's default quantizable layers)
DEFAULT_OP_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Linear")
#: NNI QAT's moving-average decay for activation ranges
QAT_EMA_DECAY = 0.99

OpFactory = Callable[[int], TensorFakeQuant]


@dataclass(frozen=True)
class Method:
    """One NNI quantizer: which tensors it can round, how, and the bit widths it allows."""

    name: str
    ops: Mapping[str, OpFactory]
    bits: tuple[int, int] = (1, 32)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("Naive", {"weight": NaiveWeight}, (2, 32)),
        Method(
            "QAT",
            {
                "weight": lambda b: RangeLinearWeight(b, ASYMMETRIC_UNSIGNED),
                "input": lambda b: RangeLinearActivation(b, ASYMMETRIC_UNSIGNED, ema_decay=QAT_EMA_DECAY),
                "output": lambda b: RangeLinearActivation(b, ASYMMETRIC_UNSIGNED, ema_decay=QAT_EMA_DECAY),
            },
        ),
        Method("DoReFa", {"weight": DorefaWeight}),
        Method("BNN", {"weight": SignQuant, "output": SignQuant}, (1, 1)),
        Method(
            "LSQ",
            {
                "weight": lambda b: LsqQuant(b, signed=True),
                "input": lambda b: LsqQuant(b, signed=False),
                "output": lambda b: LsqQuant(b, signed=False),
            },
            (2, 32),
        ),
    )
}


@dataclass(frozen=True)
class Rule:
    """A compiled config_list entry."""

    index: int
    bits: Mapping[str, int]  # quant type -> bits
    op_types: tuple[str, ...] | None
    op_names: tuple[str, ...] | None
    exclude: bool = False

    def selects(self, name: str, module: nn.Module) -> bool:
        if self.op_types is not None:
            types = {t for t in self.op_types if t != "default"}
            if "default" in self.op_types:
                types |= set(DEFAULT_OP_TYPES)
            if type(module).__name__ not in types:
                return False
        return self.op_names is None or name in self.op_names


def _fail(message: str, *key: Any, hint: str | None = None) -> QuantizerError:
    return QuantizerError(message, key=("config_list", *key), hint=hint)


def compile_config_list(config_list: Sequence[Mapping[str, Any]], method: str) -> list[Rule]:
    """Rules from NNI entries for ``method``; QuantizerError (with the entry's path) when one cannot work."""
    if method not in METHODS:
        raise QuantizerError(
            f"unknown NNI quantizer {method!r}", key=("method",), hint="use one of: " + ", ".join(METHODS)
        )
    spec = METHODS[method]
    rules = []
    for i, entry in enumerate(config_list):
        exclude = bool(entry.get("exclude", False))
        types = list(entry.get("quant_types") or [])
        if not types and not exclude:
            raise _fail(f"entry {i + 1} names no quant_types", i, hint="add e.g. quant_types: [weight]")
        bad = [t for t in types if t not in spec.ops]
        if bad:
            raise _fail(
                f"entry {i + 1}: NNI's {method} quantizer does not round {', '.join(bad)}",
                i,
                "quant_types",
                hint=f"{method} rounds: " + ", ".join(spec.ops),
            )
        raw_bits = entry.get("quant_bits", 8)
        bits = {t: raw_bits for t in types} if not isinstance(raw_bits, Mapping) else dict(raw_bits)
        for t in types:
            b = bits.get(t)
            lo, hi = spec.bits
            if isinstance(b, bool) or not isinstance(b, int) or not lo <= b <= hi:
                raise _fail(
                    f"entry {i + 1}: {t} bits must be an integer in {lo}..{hi} for {method}, got {b!r}",
                    i,
                    "quant_bits",
                )
        op_types = entry.get("op_types")
        op_names = entry.get("op_names")
        if op_types is None and op_names is None:
            raise _fail(f"entry {i + 1} selects no module", i, hint="add op_types: [default] or op_names: [...]")
        rules.append(
            Rule(
                index=i,
                bits={t: int(bits[t]) for t in types},
                op_types=tuple(op_types) if op_types is not None else None,
                op_names=tuple(op_names) if op_names is not None else None,
                exclude=exclude,
            )
        )
    return rules


class NNIQuantizer(Quantizer):
    """NNI's quantizer ``method`` (Naive, QAT, DoReFa, BNN, LSQ) over the modules ``config_list`` selects."""

    def __init__(
        self,
        model: nn.Module,
        method: str,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: Any = None,
        *,
        name: str = "",
    ) -> None:
        super().__init__(model, optimizer, name=name)
        self.method = method
        self.rules = compile_config_list(config_list, method)
        self.post_training = method == "Naive"  # NNI's naive quantizer rounds a trained model
        modules = dict(model.named_modules())
        for rule in self.rules:
            for j, op_name in enumerate(rule.op_names or ()):
                if op_name not in modules:
                    from difflib import get_close_matches

                    close = get_close_matches(op_name, [n for n in modules if n], n=3, cutoff=0.5)
                    raise _fail(
                        f"entry {rule.index + 1}: op_names names {op_name!r}, which the model does not have"
                        + (f"; closest: {', '.join(close)}" if close else ""),
                        rule.index,
                        "op_names",
                        j,
                    )
            if not any(rule.selects(n, m) for n, m in modules.items() if n):
                raise _fail(
                    f"entry {rule.index + 1} selects no module of the model",
                    rule.index,
                    hint="check op_types (class names such as Conv2d, or default) and op_names",
                )

    def rule_for(self, name: str, module: nn.Module) -> Rule | None:
        chosen = None
        for rule in self.rules:
            if rule.selects(name, module):
                chosen = rule
        return None if chosen is None or chosen.exclude else chosen

    def qbits(self, name: str, module: nn.Module) -> QBits:
        rule = self.rule_for(name, module)
        if rule is None:
            return QBits(None, None, None)
        return QBits(rule.bits.get("output"), rule.bits.get("weight"), None)

    def layer_ops(self, name, module, bits):
        rule = self.rule_for(name, module) if name else None
        if rule is None:
            return {}
        factories = METHODS[self.method].ops
        ops: dict[str, TensorFakeQuant] = {}
        for t, b in rule.bits.items():
            if t == "weight" and not isinstance(module._parameters.get("weight"), nn.Parameter):
                continue
            ops[t] = factories[t](b)
        return ops


def quantize(
    model: nn.Module, config_list: Sequence[Mapping[str, Any]], method: str = "QAT", optimizer: Any = None
) -> NNIQuantizer:
    """Attach NNI quantizer ``method`` to ``model`` (learned steps join ``optimizer``); train, then
    call ``.finalize()`` for the effective weights and the plan."""
    quantizer = NNIQuantizer(model, method, config_list, optimizer)
    quantizer.prepare(optimizer=optimizer)
    return quantizer
