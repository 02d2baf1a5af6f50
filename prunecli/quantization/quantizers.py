"""Distiller's quantizers, by class name, with Distiller's constructor arguments.

A quantizer decides, per module, the bit widths (defaults plus ``overrides``: regular expressions
matched against the whole module name, first match wins, as Distiller does) and which
fake-quant ops to attach (:mod:`prunecli.quantization.fakequant`), then attaches them with
:class:`~prunecli.quantization.layers.QuantizedLayer` so no parameter is renamed. ``finalize``
writes the effective float weights into the model, removes the hooks and returns the
:class:`~prunecli.quantization.spec.QuantPlan`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .fakequant import (
    ClippedActivation,
    DorefaWeight,
    PactActivation,
    RangeLinearActivation,
    RangeLinearWeight,
    TensorFakeQuant,
    WrpnWeight,
)
from .layers import MaskLookup, QuantizedLayer
from .linear import ASYMMETRIC_UNSIGNED, SYMMETRIC, is_signed
from .spec import LayerQuant, QuantPlan

#: layers whose weights are quantized (Distiller's list, plus Conv1d)
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding)
#: layers never fake-quantized by post-training quantization (Distiller's blacklist and no-ops)
SKIPPED_LEAVES: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout)
BIT_KEYS = ("bits_activations", "bits_weights", "bits_bias")


class QuantizerError(ValueError):
    """A quantizer argument that cannot work for this model; ``key`` is the argument's path."""

    def __init__(self, message: str, *, key: tuple[str, ...] = (), hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.hint = hint


@dataclass(frozen=True)
class QBits:
    acts: int | None
    wts: int | None
    bias: int | None


def _mode_pair(mode: Any) -> tuple[str, str]:
    """``mode`` as (activations, weights): one name for both, or a mapping with both keys."""
    if isinstance(mode, Mapping):
        return str(mode["activations"]), str(mode["weights"])
    return str(mode), str(mode)


def _is_leaf(module: nn.Module) -> bool:
    return next(iter(module.children()), None) is None


class Quantizer:
    """The shared part: bit widths per module from defaults and overrides, hooks, export."""

    #: override keys this class accepts besides the bit widths (Distiller's replacement-function kwargs)
    OVERRIDE_KEYS: ClassVar[tuple[str, ...]] = ()
    #: the weight bits argument's YAML name (PostTrainLinearQuantizer says bits_parameters)
    post_training: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = None,
        bits_activations: int | None = None,
        bits_weights: int | None = None,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        name: str = "",
    ) -> None:
        self.name = name
        self.model = model
        self.optimizer = optimizer
        self.default = QBits(bits_activations, bits_weights, bits_bias)
        self.overrides = {str(k): dict(v or {}) for k, v in (overrides or {}).items()}
        self.layers: list[QuantizedLayer] = []
        self.prepared = False
        self._check_overrides()

    # ---------------------------------------------------------------- per-module settings
    @staticmethod
    def _name_to_match(name: str) -> str:
        return name.replace("module.", "", 1)

    def _check_overrides(self) -> None:
        names = [self._name_to_match(n) for n, _ in self.model.named_modules() if n]
        for pattern, entry in self.overrides.items():
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise QuantizerError(
                    f"override {pattern!r} is not a valid regular expression: {exc}",
                    key=("overrides", pattern),
                ) from None
            if not any(regex.fullmatch(n) for n in names):
                from difflib import get_close_matches

                close = get_close_matches(pattern, names, n=3, cutoff=0.5)
                raise QuantizerError(
                    f"override {pattern!r} matches no module of the model"
                    + (f"; closest module names: {', '.join(close)}" if close else ""),
                    key=("overrides", pattern),
                    hint="overrides are regular expressions matched against whole module names "
                    "(model.named_modules()), e.g. 'layer1\\..*conv.*'",
                )
            unknown = sorted(set(entry) - set(BIT_KEYS) - set(self.OVERRIDE_KEYS))
            if unknown:
                raise QuantizerError(
                    f"override {pattern!r}: {type(self).__name__} does not accept {', '.join(unknown)}",
                    key=("overrides", pattern, unknown[0]),
                    hint="accepted: " + ", ".join((*BIT_KEYS, *self.OVERRIDE_KEYS)),
                )
            for key in BIT_KEYS:
                bits = entry.get(key)
                if bits is not None and (
                    isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32
                ):
                    raise QuantizerError(
                        f"override {pattern!r}: {key} must be a bit width in 1..32 or null, got {bits!r}",
                        key=("overrides", pattern, key),
                    )

    def override_for(self, name: str) -> dict[str, Any]:
        target = self._name_to_match(name)
        for pattern, entry in self.overrides.items():
            if re.fullmatch(pattern, target):
                return entry
        return {}

    def qbits(self, name: str, module: nn.Module) -> QBits:
        entry = self.override_for(name)
        acts = entry.get("bits_activations", self.default.acts)
        wts = entry.get("bits_weights", self.default.wts)
        bias = entry.get("bits_bias", self.default.bias)
        if not isinstance(module, WEIGHT_LAYERS):
            wts = bias = None
        return QBits(acts, wts, bias)

    # ---------------------------------------------------------------- hooks
    def layer_ops(self, name: str, module: nn.Module, bits: QBits) -> dict[str, TensorFakeQuant]:
        """The fake-quant ops of one module (empty: leave it float)."""
        raise NotImplementedError

    def prepare(self, mask_of: MaskLookup | None = None, optimizer: Any = None) -> None:
        """Attach the hooks; learned quantization parameters join the optimizer as their own group."""
        if self.prepared:
            return
        optimizer = optimizer if optimizer is not None else self.optimizer
        for name, module in list(self.model.named_modules()):
            ops = self.layer_ops(name, module, self.qbits(name, module))
            if ops:
                self.layers.append(QuantizedLayer(name, module, mask_of=mask_of, **ops))
        learned = [p for layer in self.layers for op in layer.ops.values() for p in op.parameters()]
        if optimizer is not None and learned:
            optimizer.add_param_group(self.param_group(learned))
        self.prepared = True

    def param_group(self, params: list[nn.Parameter]) -> dict[str, Any]:
        return {"params": params}

    # ---------------------------------------------------------------- export
    def layer_plan(self, layer: QuantizedLayer) -> LayerQuant:
        weight = layer.module._parameters.get("weight") if "weight" in layer.ops else None
        mode = getattr(layer.ops.get("weight"), "mode", None) or getattr(
            layer.ops.get("output"), "mode", SYMMETRIC
        )
        return LayerQuant(
            name=layer.name,
            method=type(self).__name__,
            mode=mode,
            weight=layer.ops["weight"].export(weight.detach()) if weight is not None else None,
            input=layer.ops["input"].export(None) if "input" in layer.ops else None,
            output=layer.ops["output"].export(None) if "output" in layer.ops else None,
            bias_bits=self.bias_bits(layer),
        )

    def bias_bits(self, layer: QuantizedLayer) -> int | None:
        return None

    def export(self) -> QuantPlan:
        plan = QuantPlan()
        for layer in self.layers:
            plan.add(self.layer_plan(layer))
        return plan

    def detach(self) -> None:
        """Remove the hooks and leave the weights as trained (a build that failed)."""
        for layer in self.layers:
            layer.remove()
        self.layers = []
        self.prepared = False

    def finalize(self) -> QuantPlan:
        """The plan; then the effective float weights replace the trained ones and the hooks go."""
        plan = self.export()
        for layer in self.layers:
            effective = layer.effective_weight()
            if effective is not None:
                with torch.no_grad():
                    layer.module._parameters["weight"].copy_(effective)
            layer.remove()
        self.layers = []
        self.prepared = False
        return plan


class _ReluActivationsQuantizer(Quantizer):
    """DoReFa / PACT / WRPN: rounded weights, and every ``nn.ReLU`` replaced by a clipped rounding."""

    def weight_op(self, bits: int) -> TensorFakeQuant:
        raise NotImplementedError

    def relu_op(self, bits: int) -> TensorFakeQuant:
        return ClippedActivation(bits, 1.0)

    def layer_ops(self, name, module, bits):
        ops: dict[str, TensorFakeQuant] = {}
        if bits.wts is not None and isinstance(module, WEIGHT_LAYERS) and bits.wts < 32:
            ops["weight"] = self.weight_op(bits.wts)
        if bits.acts is not None and isinstance(module, nn.ReLU) and bits.acts < 32:
            ops["output"] = self.relu_op(bits.acts)
        return ops


class DorefaQuantizer(_ReluActivationsQuantizer):
    """DoReFa-Net (Zhou et al.): tanh-normalised weights, activations clipped to [0, 1]."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        name: str = "",
    ) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides, name=name)

    def weight_op(self, bits):
        return DorefaWeight(bits)


class WRPNQuantizer(DorefaQuantizer):
    """WRPN (Mishra et al.): weights clamped to [-1, 1] and rounded symmetrically; activations as DoReFa.

    Widening the layers, which the paper pairs with it, is the model's business (Distiller does not do it either).
    """

    def weight_op(self, bits):
        return WrpnWeight(bits)


class PACTQuantizer(_ReluActivationsQuantizer):
    """PACT (Choi et al.): DoReFa weights; activations clipped at a learned ``alpha`` per ReLU.

    ``act_clip_decay`` is the L2 penalty on the clip values (the optimizer's own weight decay when None).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        act_clip_init_val: float = 8.0,
        act_clip_decay: float | None = None,
        *,
        name: str = "",
    ) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides, name=name)
        self.act_clip_init_val = float(act_clip_init_val)
        self.act_clip_decay = act_clip_decay

    def weight_op(self, bits):
        return DorefaWeight(bits)

    def relu_op(self, bits):
        return PactActivation(bits, self.act_clip_init_val)

    def param_group(self, params):
        group: dict[str, Any] = {"params": params}
        if self.act_clip_decay is not None:
            group["weight_decay"] = float(self.act_clip_decay)
        return group


class QuantAwareTrainRangeLinearQuantizer(Quantizer):
    """Range-linear quantization-aware training: weights on their own range (per tensor or channel),
    ReLU outputs and the model's input on ranges tracked by a bias-corrected EMA."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = None,
        bits_activations: int | None = 32,
        bits_weights: int | None = 32,
        bits_bias: int | None = 32,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        mode: Any = SYMMETRIC,
        ema_decay: float = 0.999,
        per_channel_wts: bool = False,
        quantize_inputs: bool = True,
        num_bits_inputs: int | None = None,
        *,
        name: str = "",
    ) -> None:
        super().__init__(model, optimizer, bits_activations, bits_weights, bits_bias, overrides, name=name)
        self.mode_acts, self.mode_wts = _mode_pair(mode)
        self.ema_decay = float(ema_decay)
        self.per_channel_wts = bool(per_channel_wts)
        self.quantize_inputs = bool(quantize_inputs)
        self.num_bits_inputs = num_bits_inputs if num_bits_inputs is not None else bits_activations

    def layer_ops(self, name, module, bits):
        ops: dict[str, TensorFakeQuant] = {}
        if name == "" and self.quantize_inputs and self.num_bits_inputs is not None:
            ops["input"] = RangeLinearActivation(
                self.num_bits_inputs, self.mode_acts, ema_decay=self.ema_decay
            )
        if bits.wts is not None and isinstance(module, WEIGHT_LAYERS):
            per_channel = self.per_channel_wts and not isinstance(module, nn.Embedding)
            ops["weight"] = RangeLinearWeight(bits.wts, self.mode_wts, per_channel)
        if bits.acts is not None and isinstance(module, nn.ReLU):
            ops["output"] = RangeLinearActivation(bits.acts, self.mode_acts, ema_decay=self.ema_decay)
        return ops


class PostTrainLinearQuantizer(Quantizer):
    """Post-training range-linear quantization of a trained model.

    Conv/Linear layers get rounded weights (their own range, per channel with ``per_channel_wts``),
    inputs and outputs; the bias is rounded onto the accumulator's grid (``bits_accum``, scale =
    input scale x weight scale). Other leaf modules with statistics get their inputs and outputs
    rounded. Activation ranges come from ``model_activation_stats`` (a stats file or its records)
    through ``clip_acts``; without statistics they are measured on every batch (dynamic).
    """

    OVERRIDE_KEYS = (
        "clip_acts",
        "clip_n_stds",
        "clip_half_range",
        "mode",
        "per_channel_wts",
        "input_overrides",
        "quantize_inputs",
    )
    post_training = True

    def __init__(
        self,
        model: nn.Module,
        bits_activations: int | None = 8,
        bits_parameters: int | None = 8,
        bits_accum: int = 32,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        mode: Any = SYMMETRIC,
        clip_acts: str = "NONE",
        per_channel_wts: bool = False,
        model_activation_stats: str | Mapping[str, Any] | None = None,
        clip_n_stds: float | None = None,
        clip_half_range: bool = False,
        inputs_quant_auto_fallback: bool = True,
        *,
        name: str = "",
        optimizer: Any = None,
    ) -> None:
        super().__init__(model, None, bits_activations, bits_parameters, bits_accum, overrides, name=name)
        self.mode = mode
        self.clip_acts = str(clip_acts)
        if self.clip_acts == "N_STD" and clip_n_stds is None:
            raise QuantizerError("clip_acts N_STD needs clip_n_stds", key=("clip_n_stds",))
        self.per_channel_wts = bool(per_channel_wts)
        self.clip_n_stds = clip_n_stds
        self.clip_half_range = bool(clip_half_range)
        self.inputs_quant_auto_fallback = bool(inputs_quant_auto_fallback)
        self.bits_accum = int(bits_accum)
        if isinstance(model_activation_stats, (str,)) or hasattr(model_activation_stats, "__fspath__"):
            from .stats import read_stats

            model_activation_stats = read_stats(model_activation_stats)
        self.stats: Mapping[str, Any] = model_activation_stats or {}
        if self.stats:
            from .stats import check_stats_cover, check_stats_shapes

            source = str(getattr(self.stats, "source", ""))
            needed = self._stats_needed()
            check_stats_cover(self.stats, needed, source=source)
            modules = {self._name_to_match(n): m for n, m in self.model.named_modules()}
            check_stats_shapes(self.stats, {n: modules[n] for n in needed}, source=source)

    def _stats_needed(self) -> list[str]:
        """Layers whose activations this quantizer rounds from statistics."""
        return [
            self._name_to_match(n)
            for n, m in self.model.named_modules()
            if n and isinstance(m, WEIGHT_LAYERS) and self.qbits(n, m).acts is not None
        ]

    def _setting(self, entry: Mapping[str, Any], key: str, default: Any) -> Any:
        return entry.get(key, default)

    def layer_ops(self, name, module, bits):
        if not name or bits.acts is None and bits.wts is None:
            return {}
        entry = self.override_for(name)
        mode_acts, mode_wts = _mode_pair(self._setting(entry, "mode", self.mode))
        clip = str(self._setting(entry, "clip_acts", self.clip_acts))
        n_stds = self._setting(entry, "clip_n_stds", self.clip_n_stds)
        half = bool(self._setting(entry, "clip_half_range", self.clip_half_range))
        stats = self.stats.get(self._name_to_match(name))
        ops: dict[str, TensorFakeQuant] = {}
        param_layer = isinstance(module, WEIGHT_LAYERS)
        if not param_layer and (not _is_leaf(module) or isinstance(module, SKIPPED_LEAVES) or stats is None):
            return {}  # Distiller keeps leaves without statistics in float
        if param_layer and bits.wts is not None:
            per_channel = bool(self._setting(entry, "per_channel_wts", self.per_channel_wts))
            ops["weight"] = RangeLinearWeight(
                bits.wts, mode_wts, per_channel and not isinstance(module, nn.Embedding)
            )
        if bits.acts is None:
            return ops
        out_stats = stats.get("output") if stats else None
        ops["output"] = RangeLinearActivation(
            bits.acts, mode_acts, clip, stats=out_stats, n_stds=n_stds, half_range=half
        )
        if self._setting(entry, "quantize_inputs", True):
            ops["input"] = self._input_op(entry, stats, bits.acts, mode_acts, clip, n_stds)
        return ops

    def _input_op(self, entry, stats, bits, mode, clip, n_stds) -> RangeLinearActivation:
        override = dict(
            (entry.get("input_overrides") or {}).get(0) or (entry.get("input_overrides") or {}).get("0") or {}
        )
        in_stats = None
        if stats and stats.get("inputs"):
            inputs = stats["inputs"]
            in_stats = inputs.get(0, inputs.get("0"))
        if not override.pop("from_output", False):
            bits = override.pop("bits_activations", bits)
            mode = _mode_pair(override.pop("mode", mode))[0]
            clip = str(override.pop("clip_acts", clip))
            n_stds = override.pop("clip_n_stds", n_stds)
        return RangeLinearActivation(bits, mode, clip, stats=in_stats, n_stds=n_stds)

    def bias_bits(self, layer):
        return self.bits_accum if "weight" in layer.ops and "input" in layer.ops else None

    def prepare(self, mask_of=None, optimizer=None):
        super().prepare(mask_of, None)
        for layer in self.layers:
            bias = getattr(layer.module, "bias", None)
            if "weight" in layer.ops and "input" in layer.ops and isinstance(bias, torch.Tensor):
                layer._handles.append(
                    layer.module.register_forward_pre_hook(self._bias_hook(layer), prepend=False)
                )

    def _bias_hook(self, layer: QuantizedLayer):
        """Round the bias onto the accumulator grid (scale = input scale x weight scale) for the call."""

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            bias = module._parameters["bias"]
            w_op, in_op = layer.ops["weight"], layer.ops["input"]
            assert isinstance(w_op, RangeLinearWeight) and isinstance(in_op, RangeLinearActivation)
            if in_op.steps == 0 and not in_op.fixed:
                return
            with torch.no_grad():
                w_scale, _ = w_op._params(module._parameters["weight"])
                in_scale, _ = in_op._params()
                scale = (w_scale.reshape(-1) * in_scale).to(bias)
                limit = 2 ** (self.bits_accum - 1)
                q = torch.clamp(torch.round(bias * scale), -limit, limit - 1)
            module.__dict__["bias"] = bias + (q / scale - bias).detach()

        return hook

    def finalize(self):
        for layer in self.layers:
            layer.module.__dict__.pop("bias", None)
        return super().finalize()


__all__ = ["QBits", "Quantizer", "QuantizerError", "ASYMMETRIC_UNSIGNED", "is_signed"]
