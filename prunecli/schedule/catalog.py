"""Every Distiller class a schedule may name, with a JSON Schema of its YAML arguments.

Distiller resolves ``class:`` through its module globals and filters keys against the
constructor signature, so a YAML key is exactly a constructor argument name. This registry
reproduces that set explicitly, so a typo is caught before training instead of deep inside it.
Schemas are JSON Schema Draft 2020-12; ``x-expected`` annotates a sub-schema with the phrase
used in error messages ("a sparsity in [0, 1)").
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from .vocabulary import THINNING_FUNCTIONS

# ---------------------------------------------------------------------------- schema pieces

SPARSITY: dict[str, Any] = {
    "type": "number",
    "minimum": 0,
    "exclusiveMaximum": 1,
    "x-expected": "a sparsity in [0, 1)",
}
WEIGHTS: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ],
    "x-expected": "a parameter name or a non-empty list of parameter names",
}
NUMBER: dict[str, Any] = {"type": "number", "x-expected": "a number"}
NON_NEGATIVE: dict[str, Any] = {"type": "number", "minimum": 0, "x-expected": "a number >= 0"}
BOOL: dict[str, Any] = {"type": "boolean", "x-expected": "true or false"}
NAME_TO_SPARSITY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": SPARSITY,
    "minProperties": 1,
    "x-expected": "a mapping 'parameter name: sparsity in [0, 1)'",
}
NAME_TO_NUMBER: dict[str, Any] = {
    "type": "object",
    "additionalProperties": NUMBER,
    "minProperties": 1,
    "x-expected": "a mapping 'parameter name: number'",
}
GROUP_DEPENDENCY: dict[str, Any] = {
    "enum": ["Leader", None],
    "x-expected": "'Leader' (or leave it out)",
}

#: group_type values per family (Distiller's asserts; see distiller-notes b.2).
RANKED_GROUP_TYPES = ("3D", "Filters", "Channels", "Rows", "Blocks")
FILTER_GROUP_TYPES = ("3D", "Filters")
THRESHOLD_GROUP_TYPES = ("2D", "Rows", "Cols", "3D", "Filters", "Channels")
LASSO_GROUP_TYPES = (*THRESHOLD_GROUP_TYPES, "4D", "Rows+Cols", "Cols+Rows", "Channels+4D", "4D+Channels")
THRESHOLD_CRITERIA: dict[str, Any] = {
    "enum": [None, "Max", "Mean_Abs"],
    "x-expected": "one of Max, Mean_Abs (or leave it out)",
}


def group_type(choices: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(choices), "x-expected": "one of " + ", ".join(choices)}


def regims(choices: tuple[str, ...], what: str = "strength") -> dict[str, Any]:
    """``reg_regims: {param: [value, group_type]}``."""
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {
            "type": "array",
            "prefixItems": [NUMBER, group_type(choices)],
            "minItems": 2,
            "maxItems": 2,
            "x-expected": f"a pair [<{what}>, <group_type>] with group_type one of " + ", ".join(choices),
        },
        "x-expected": f"a mapping 'parameter name: [<{what}>, <group_type>]'",
    }


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
    }


# ---------------------------------------------------------------------------- class specs


@dataclass(frozen=True)
class ClassSpec:
    """What the loader needs to know about one YAML-constructible class."""

    name: str
    section: str
    schema: dict[str, Any]
    #: How the plan computes a pruner's target: "agp", "oneshot", "levels", "random_range", or None.
    target: str | None = None
    #: Arguments holding parameter names: list-valued ("weights") or dict-keyed by name.
    name_list_args: tuple[str, ...] = ()
    name_dict_args: tuple[str, ...] = ()
    #: Needs starting_epoch/ending_epoch/frequency (uses the frequency in its formula).
    needs_range: bool = False
    #: Why it is refused, when it is recognised but not supported.
    unsupported: str | None = None
    aliases_of: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _ranked(
    name: str, types: tuple[str, ...], *, agp: bool, extra: dict[str, Any] | None = None
) -> ClassSpec:
    common_opt: dict[str, Any] = {
        "group_dependency": GROUP_DEPENDENCY,
        "prune_normalized": BOOL,  # prunecli's: couple and prune channels LayerNorm/GroupNorm normalises
        **(extra or {}),
    }
    if agp:
        req = {
            "initial_sparsity": SPARSITY,
            "final_sparsity": SPARSITY,
            "group_type": group_type(types),
            "weights": WEIGHTS,
        }
    else:
        req = {"group_type": group_type(types), "desired_sparsity": SPARSITY, "weights": WEIGHTS}
    return ClassSpec(
        name,
        "pruners",
        obj(req, common_opt),
        target="agp" if agp else "oneshot",
        name_list_args=("weights",),
        needs_range=agp,
    )


KWARGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "block_shape": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 4,
            "maxItems": 4,
            "x-expected": "[<repetitions>, <depth>, 1, 1] (positive integers)",
        }
    },
    "additionalProperties": False,
    "x-expected": "a mapping with block_shape: [<repetitions>, <depth>, 1, 1]",
}
#: kept filter/channel counts rounded up to a multiple of this (prunecli extension; 1 = off)
ROUND_TO: dict[str, Any] = {"type": "integer", "minimum": 1, "x-expected": "an integer >= 1"}
LP_EXTRA: dict[str, Any] = {
    "kwargs": {"anyOf": [KWARGS, {"type": "null"}], "x-expected": KWARGS["x-expected"]},
    "noise": NON_NEGATIVE,
    "group_size": {"type": "integer", "minimum": 1, "x-expected": "an integer >= 1"},
    "round_to": ROUND_TO,
}


def _pruners() -> list[ClassSpec]:
    specs = [
        ClassSpec(
            "AutomatedGradualPruner",
            "pruners",
            obj({"initial_sparsity": SPARSITY, "final_sparsity": SPARSITY, "weights": WEIGHTS}),
            target="agp",
            name_list_args=("weights",),
            needs_range=True,
        ),
        ClassSpec(
            "SparsityLevelParameterPruner",
            "pruners",
            obj({"levels": NAME_TO_SPARSITY}),
            target="levels",
            name_dict_args=("levels",),
        ),
        ClassSpec(
            "MagnitudeParameterPruner",
            "pruners",
            obj(
                {"thresholds": {**NAME_TO_NUMBER, "x-expected": "a mapping 'parameter name or *: threshold'"}}
            ),
            name_dict_args=("thresholds",),
        ),
        ClassSpec(
            "SensitivityPruner",
            "pruners",
            obj({"sensitivities": NAME_TO_NUMBER}),
            name_dict_args=("sensitivities",),
        ),
        ClassSpec(
            "SplicingPruner",
            "pruners",
            obj(
                {"sensitivities": NAME_TO_NUMBER, "low_thresh_mult": NUMBER, "hi_thresh_mult": NUMBER},
                {"sensitivity_multiplier": NUMBER},
            ),
            name_dict_args=("sensitivities",),
        ),
        ClassSpec(
            "BaiduRNNPruner",
            "pruners",
            obj(
                {
                    "q": NUMBER,
                    "ramp_epoch_offset": {"type": "integer", "minimum": 0, "x-expected": "an integer >= 0"},
                    "ramp_slope_mult": NUMBER,
                    "weights": WEIGHTS,
                }
            ),
            name_list_args=("weights",),
            needs_range=True,
        ),
        ClassSpec(
            "StructureParameterPruner",
            "pruners",
            obj(
                {
                    "reg_regims": regims(THRESHOLD_GROUP_TYPES, "threshold"),
                    "threshold_criteria": THRESHOLD_CRITERIA,
                }
            ),
            name_dict_args=("reg_regims",),
        ),
        ClassSpec(
            "RandomLevelStructureParameterPruner",
            "pruners",
            obj(
                {
                    "group_type": group_type(RANKED_GROUP_TYPES),
                    "sparsity_range": {
                        "type": "array",
                        "items": SPARSITY,
                        "minItems": 2,
                        "maxItems": 2,
                        "x-expected": "a pair [<low>, <high>] of sparsities in [0, 1)",
                    },
                    "weights": WEIGHTS,
                },
                {"group_dependency": GROUP_DEPENDENCY, "kwargs": LP_EXTRA["kwargs"]},
            ),
            target="random_range",
            name_list_args=("weights",),
        ),
    ]
    for norm in ("L1", "L2"):
        base = f"{norm}RankedStructureParameterPruner"
        specs.append(_ranked(base, RANKED_GROUP_TYPES, agp=False, extra=LP_EXTRA))
        specs.append(_ranked(base + "_AGP", RANKED_GROUP_TYPES, agp=True, extra=LP_EXTRA))
    for base in (
        "ActivationAPoZRankedFilterPruner",
        "ActivationMeanRankedFilterPruner",
        "GradientRankedFilterPruner",
        "RandomRankedFilterPruner",
        "BernoulliFilterPruner",
    ):
        rounding = {} if base == "BernoulliFilterPruner" else {"round_to": ROUND_TO}
        specs.append(_ranked(base, FILTER_GROUP_TYPES, agp=False, extra=rounding))
        specs.append(_ranked(base + "_AGP", FILTER_GROUP_TYPES, agp=True, extra=rounding))
    fm = _ranked(
        "FMReconstructionChannelPruner", ("Channels",), agp=False, extra={**LP_EXTRA, "ranking_noise": NUMBER}
    )
    specs.append(
        ClassSpec(
            fm.name,
            "pruners",
            fm.schema,
            target="oneshot",
            name_list_args=("weights",),
            unsupported="FMReconstructionChannelPruner is not supported: it needs AMC's cached feature maps",
        )
    )
    specs.append(_native())
    return specs


def _native() -> ClassSpec:
    """The engine's own entry: target, metric, allocation, schedule, objective (or a preset)."""
    from .native import NATIVE_CLASS, SCHEMA

    return ClassSpec(
        NATIVE_CLASS,
        "pruners",
        SCHEMA,
        target="native",
        name_list_args=("weights",),
        name_dict_args=("weights",),
    )


def _regularizers() -> list[ClassSpec]:
    return [
        ClassSpec(
            "L1Regularizer",
            "regularizers",
            obj({"reg_regims": NAME_TO_NUMBER}, {"threshold_criteria": THRESHOLD_CRITERIA}),
            name_dict_args=("reg_regims",),
        ),
        ClassSpec(
            "GroupLassoRegularizer",
            "regularizers",
            obj({"reg_regims": regims(LASSO_GROUP_TYPES)}, {"threshold_criteria": THRESHOLD_CRITERIA}),
            name_dict_args=("reg_regims",),
        ),
        ClassSpec(
            "GroupVarianceRegularizer",
            "regularizers",
            obj({"reg_regims": regims(LASSO_GROUP_TYPES)}),
            name_dict_args=("reg_regims",),
        ),
    ]


THINNING_FUNCS = tuple(THINNING_FUNCTIONS)


def _extensions() -> list[ClassSpec]:
    schema = obj(
        {
            "thinning_func_str": {
                "enum": list(THINNING_FUNCS),
                "x-expected": "one of " + ", ".join(THINNING_FUNCS),
            },
            "arch": {"type": "string", "x-expected": "a model name"},
            "dataset": {"type": "string", "x-expected": "a data set name such as cifar10 or imagenet"},
        }
    )
    return [
        ClassSpec("StructureRemover", "extensions", schema),
        ClassSpec("FilterRemover", "extensions", schema, aliases_of="StructureRemover"),
        ClassSpec("ChannelRemover", "extensions", schema, aliases_of="StructureRemover"),
    ]


QUANTIZER_NAMES = (
    "PostTrainLinearQuantizer",
    "QuantAwareTrainRangeLinearQuantizer",
    "NCFQuantAwareTrainQuantizer",
    "DorefaQuantizer",
    "PACTQuantizer",
    "WRPNQuantizer",
)
#: Distiller's LinearQuantMode and ClipMode names
QUANT_MODES = ("SYMMETRIC", "ASYMMETRIC_UNSIGNED", "ASYMMETRIC_SIGNED")
CLIP_MODES = ("NONE", "AVG", "N_STD", "GAUSS", "LAPLACE")
BITS: dict[str, Any] = {
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": 32}, {"type": "null"}],
    "x-expected": "a bit width in 1..32 (or null: keep float)",
}
QUANT_MODE: dict[str, Any] = {"enum": list(QUANT_MODES), "x-expected": "one of " + ", ".join(QUANT_MODES)}
MODE_ARG: dict[str, Any] = {
    "anyOf": [
        QUANT_MODE,
        {
            "type": "object",
            "properties": {"activations": QUANT_MODE, "weights": QUANT_MODE},
            "required": ["activations", "weights"],
            "additionalProperties": False,
        },
    ],
    "x-expected": "one of " + ", ".join(QUANT_MODES) + ", or {activations: MODE, weights: MODE}",
}
CLIP_ARG: dict[str, Any] = {"enum": list(CLIP_MODES), "x-expected": "one of " + ", ".join(CLIP_MODES)}
_BIT_OVERRIDES = {"bits_activations": BITS, "bits_weights": BITS, "bits_bias": BITS}


def _overrides(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``overrides: {module-name regex: {bits_... and per-class keys}}``."""
    entry = {
        "type": ["object", "null"],
        "properties": {**_BIT_OVERRIDES, **(extra or {})},
        "additionalProperties": False,
        "x-expected": "a mapping of " + ", ".join([*_BIT_OVERRIDES, *(extra or {})]),
    }
    return {
        "type": ["object", "null"],
        "additionalProperties": entry,
        "x-expected": "a mapping 'module-name regex: {bits_activations: ..., bits_weights: ...}'",
    }


INPUT_OVERRIDE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "from_output": BOOL,
        "bits_activations": BITS,
        "mode": QUANT_MODE,
        "clip_acts": CLIP_ARG,
        "clip_n_stds": NON_NEGATIVE,
    },
    "additionalProperties": False,
    "x-expected": "a mapping with from_output, bits_activations, mode, clip_acts or clip_n_stds",
}
PTQ_OVERRIDES = _overrides(
    {
        "clip_acts": CLIP_ARG,
        "clip_n_stds": NON_NEGATIVE,
        "clip_half_range": BOOL,
        "mode": MODE_ARG,
        "per_channel_wts": BOOL,
        "quantize_inputs": BOOL,
        "input_overrides": {
            "type": "object",
            "additionalProperties": INPUT_OVERRIDE,
            "x-expected": "a mapping 'input index: {from_output: true} or {clip_acts: ..., ...}'",
        },
    }
)
NON_NEGATIVE_OR_NULL: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}],
    "x-expected": "a number >= 0 (or null)",
}
STATS_PATH: dict[str, Any] = {
    "type": ["string", "null"],
    "minLength": 1,
    "x-expected": "the path of an activation statistics YAML file (prunecli collect-stats writes one)",
}
#: the argument holding a statistics file path (resolved by the loader like Distiller: working
#: directory first, then the schedule's folder and its parents)
STATS_ARG = "model_activation_stats"


NNI_METHODS = ("Naive", "QAT", "DoReFa", "BNN", "LSQ")
NNI_METHOD: dict[str, Any] = {"enum": list(NNI_METHODS), "x-expected": "one of " + ", ".join(NNI_METHODS)}
_NNI_TYPES: dict[str, Any] = {
    "type": "array",
    "items": {"enum": ["weight", "input", "output"]},
    "minItems": 1,
    "x-expected": "a list of weight, input, output",
}
_NNI_BITS_ONE: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 32}
_NAMES: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "x-expected": "a list of names"}
NNI_CONFIG_LIST: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "quant_types": _NNI_TYPES,
            "quant_bits": {
                "anyOf": [
                    _NNI_BITS_ONE,
                    {
                        "type": "object",
                        "properties": {t: _NNI_BITS_ONE for t in ("weight", "input", "output")},
                        "additionalProperties": False,
                    },
                ],
                "x-expected": "a bit width in 1..32, or {weight: N, input: N, output: N}",
            },
            "op_types": _NAMES,
            "op_names": _NAMES,
            "exclude": BOOL,
        },
        "additionalProperties": False,
        "x-expected": "an entry with quant_types, quant_bits, op_types and/or op_names (exclude)",
    },
    "x-expected": "a list of NNI config entries",
}


def _quantizers() -> list[ClassSpec]:
    base = {"bits_activations": BITS, "bits_weights": BITS, "bits_bias": BITS, "overrides": _overrides()}
    relu_family = obj({}, base)
    return [
        ClassSpec(
            "PostTrainLinearQuantizer",
            "quantizers",
            obj(
                {},
                {
                    "bits_activations": BITS,
                    "bits_parameters": BITS,
                    "bits_accum": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 32,
                        "x-expected": "a bit width in 1..32",
                    },
                    "overrides": PTQ_OVERRIDES,
                    "mode": MODE_ARG,
                    "clip_acts": CLIP_ARG,
                    "per_channel_wts": BOOL,
                    STATS_ARG: STATS_PATH,
                    "clip_n_stds": NON_NEGATIVE_OR_NULL,
                    "clip_half_range": BOOL,
                    "inputs_quant_auto_fallback": BOOL,
                },
            ),
            notes=("post-training: applied to the model at the end of the run (or alone, without policies)",),
        ),
        ClassSpec(
            "QuantAwareTrainRangeLinearQuantizer",
            "quantizers",
            obj(
                {},
                {
                    **base,
                    "mode": MODE_ARG,
                    "ema_decay": {
                        "type": "number",
                        "minimum": 0,
                        "exclusiveMaximum": 1,
                        "x-expected": "a number in [0, 1)",
                    },
                    "per_channel_wts": BOOL,
                    "quantize_inputs": BOOL,
                    "num_bits_inputs": BITS,
                },
            ),
        ),
        ClassSpec(
            "NCFQuantAwareTrainQuantizer",
            "quantizers",
            {"type": "object"},
            unsupported="NCFQuantAwareTrainQuantizer is not supported: it quantizes Distiller's NCF model "
            "modules (EltwiseMult, Concat), which the zoo does not have",
        ),
        ClassSpec("DorefaQuantizer", "quantizers", relu_family),
        ClassSpec(
            "PACTQuantizer",
            "quantizers",
            obj(
                {},
                {
                    **base,
                    "act_clip_init_val": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "x-expected": "a number > 0",
                    },
                    "act_clip_decay": NON_NEGATIVE_OR_NULL,
                },
            ),
        ),
        ClassSpec("WRPNQuantizer", "quantizers", relu_family),
        ClassSpec(
            "NNIQuantizer",
            "quantizers",
            obj({"method": NNI_METHOD, "config_list": NNI_CONFIG_LIST}),
            notes=("prunecli's: NNI's quantizers (Naive, QAT, DoReFa, BNN, LSQ) configured by a config_list",),
        ),
    ]


# ---------------------------------------------------------------------------- LR schedulers

#: Constructor arguments the runtime supplies, never the YAML.
LR_INJECTED = ("self", "optimizer", "last_epoch", "verbose")
_SIMPLE_TYPES = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "str": {"type": "string"},
    "None": {"type": "null"},
}


def annotation_schema(annotation: str) -> dict[str, Any] | None:
    """JSON Schema for a (string) type annotation; None when YAML cannot express it (callables)."""
    ann = annotation.strip().strip("'\"")
    alternatives = [a.strip() for a in re.split(r"\s*\|\s*(?![^\[]*\])", ann)]
    if len(alternatives) > 1:
        subs = [annotation_schema(a) for a in alternatives]
        if any(s is None for s in subs):
            return None
        return {"anyOf": subs}
    if ann in _SIMPLE_TYPES:
        return dict(_SIMPLE_TYPES[ann])
    m = re.fullmatch(r"Literal\[(.*)\]", ann)
    if m:
        return {"enum": [v.strip().strip("'\"") for v in m.group(1).split(",")]}
    m = re.fullmatch(r"(?:list|List|Iterable|Sequence|tuple)\[(.*)\]", ann)
    if m:
        item = annotation_schema(m.group(1))
        return None if item is None else {"type": "array", "items": item}
    return None


def _expected_phrase(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_expected_phrase(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    kind = schema.get("type")
    if kind == "array":
        return (
            f"a list of {_expected_phrase(schema.get('items', {})).removeprefix('a ').removeprefix('an ')}s"
        )
    return {
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "string": "a string",
    }.get(kind, "null" if kind == "null" else "a value")


def lr_spec_from_signature(name: str, cls: type) -> ClassSpec:
    """Schema from a torch scheduler's signature: the YAML keys are its argument names."""
    props: dict[str, Any] = {}
    required: list[str] = []
    unsupported: str | None = None
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname in LR_INJECTED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        ann = (
            param.annotation
            if isinstance(param.annotation, str)
            else getattr(param.annotation, "__name__", "")
        )
        sub = annotation_schema(ann) if ann else None
        if sub is None and param.default is not inspect.Parameter.empty and param.default is not None:
            sub = annotation_schema(type(param.default).__name__)
        if sub is None:
            if "Callable" in ann or "LRScheduler" in ann or "Scheduler" in ann:
                if param.default is inspect.Parameter.empty:
                    unsupported = f"{name} is not supported: its argument '{pname}' must be a Python object"
                continue  # optional callables can't be written in YAML; leave them to their default
            sub = {}
        if param.default is None and sub and {"type": "null"} not in sub.get("anyOf", []):
            sub = {"anyOf": [sub, {"type": "null"}]}
        sub["x-expected"] = _expected_phrase(sub) if sub else "a value"
        props[pname] = sub
        if param.default is inspect.Parameter.empty:
            required.append(pname)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    return ClassSpec(name, "lr_schedulers", schema, unsupported=unsupported)


def _distiller_lr() -> list[ClassSpec]:
    int_list = {"type": "array", "items": {"type": "integer", "minimum": 0}, "x-expected": "a list of epochs"}
    return [
        ClassSpec(
            "PolynomialLR",
            "lr_schedulers",
            obj(
                {
                    "t_max": {"type": "integer", "minimum": 1, "x-expected": "an integer >= 1"},
                    "power": {"type": "number", "x-expected": "a number"},
                }
            ),
            notes=("Distiller's PolynomialLR (t_max, power) shadows torch's class of the same name",),
        ),
        ClassSpec(
            "MultiStepMultiGammaLR",
            "lr_schedulers",
            obj(
                {
                    "milestones": int_list,
                    "gammas": {**int_list, "items": NUMBER, "x-expected": "a list of numbers"},
                }
            ),
        ),
    ]


def _torch_lr() -> list[ClassSpec]:
    import torch.optim.lr_scheduler as lrs

    bases = {"LRScheduler", "_LRScheduler"}
    specs = []
    for name, cls in vars(lrs).items():
        if name.startswith("_") or name in bases or not inspect.isclass(cls):
            continue
        if cls.__module__ != lrs.__name__:
            continue
        if issubclass(cls, lrs.LRScheduler) or name == "ReduceLROnPlateau":
            specs.append(lr_spec_from_signature(name, cls))
    return specs


# ---------------------------------------------------------------------------- registry


@functools.cache
def catalog() -> dict[str, ClassSpec]:
    """Class name -> spec. Later entries win, as in Distiller's ``import *`` order."""
    table: dict[str, ClassSpec] = {}
    for spec in [
        *_torch_lr(),
        *_pruners(),
        *_regularizers(),
        *_quantizers(),
        *_distiller_lr(),
        *_extensions(),
    ]:
        table[spec.name] = spec
    return table


def classes_in(section: str) -> list[str]:
    return sorted(n for n, s in catalog().items() if s.section == section)


def lookup(name: str) -> ClassSpec | None:
    return catalog().get(name)
