"""The native schedule syntax: one ``pruners:`` entry naming the five axes (or a preset).

Example (any axis may be a name or a mapping with ``kind`` and the axis' options)::

    pruners:
      conv_fpgm:
        target: filters
        metric: fpgm
        allocation: {kind: global, normalize: mean, max_sparsity_per_layer: 0.8}
        schedule: {kind: agp, initial: 0.05}
        objective: {kind: macs, fraction: 0.4}
        weights: [conv1.weight, conv2.weight]
      vit_heads:
        preset: L1NormPruner
        target: heads
        sparsity: 0.25
        weights: [encoder.layers.encoder_layer_0.self_attention.in_proj_weight]

This module is plain data (no torch): the schedule loader reads the schema, the presets and
the defaults from here; :mod:`prunecli.engine.compile` builds the runtime objects. A preset is
only a default for each axis (NNI's pruners by their class names); an entry naming ``preset:``
may override any axis. The table in docs/pruning-engine.md is written from this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: preset name -> axis defaults (each axis in its mapping form)
PRESETS: dict[str, dict[str, Any]] = {
    "LevelPruner": {
        "target": {"kind": "element"},
        "metric": {"kind": "l1"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "L1NormPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "l1"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "L2NormPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "l2"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "FPGMPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "fpgm"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "SlimPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "bn_scale", "l1": 1e-4},
        "allocation": {"kind": "global", "normalize": "none"},
        "schedule": {"kind": "oneshot"},
    },
    "ActivationAPoZRankPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "apoz"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "ActivationMeanRankPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "activation_mean"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "TaylorFOWeightPruner": {
        "target": {"kind": "filters"},
        "metric": {"kind": "taylor"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
    },
    "LinearPruner": {
        "target": {"kind": "element"},
        "metric": {"kind": "l1"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "linear"},
    },
    "AGPPruner": {
        "target": {"kind": "element"},
        "metric": {"kind": "l1"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "agp"},
    },
    "MovementPruner": {
        "target": {"kind": "element"},
        "metric": {"kind": "movement"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "agp"},
    },
    "ADMMPruner": {
        "target": {"kind": "element"},
        "metric": {"kind": "l1"},
        "allocation": {"kind": "uniform"},
        "schedule": {"kind": "oneshot"},
        "admm": {"rho": 1e-4},
    },
}

#: the class name a native entry has inside prunecli (written or implied)
NATIVE_CLASS = "Pruner"
AXES = ("target", "metric", "allocation", "schedule", "objective")
#: keys that make a ``pruners:`` entry without ``class:`` a native one
NATIVE_KEYS = (*AXES, "preset", "sparsity", "admm", "plugins")
DEFAULTS: dict[str, dict[str, Any]] = {
    "allocation": {"kind": "uniform"},
    "schedule": {"kind": "oneshot"},
    "objective": {"kind": "weights"},
}
OBJECTIVE_KINDS = ("weights", "parameters", "macs")
#: objectives that count attention layer by layer: ``narrow_heads: true`` makes them read attention as
#: thinning with ``narrow_heads`` removes it (position j of every head is one channel)
HEAD_AWARE_OBJECTIVES = ("parameters", "macs")

_FRACTION = {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "x-expected": "a fraction in [0, 1)"}
_AXIS = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "minLength": 1}}},
    ],
    "x-expected": "a name, or a mapping with 'kind:' and its options",
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "preset": {"enum": sorted(PRESETS), "x-expected": "one of " + ", ".join(sorted(PRESETS))},
        "target": _AXIS,
        "metric": _AXIS,
        "allocation": _AXIS,
        "schedule": _AXIS,
        "objective": {
            "anyOf": [
                {"enum": list(OBJECTIVE_KINDS)},
                {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {"kind": {"enum": list(OBJECTIVE_KINDS)}, "fraction": _FRACTION},
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": {"enum": list(HEAD_AWARE_OBJECTIVES)},
                        "fraction": _FRACTION,
                        "narrow_heads": {"type": "boolean"},
                    },
                    "additionalProperties": False,
                },
            ],
            "x-expected": "one of "
            + ", ".join(OBJECTIVE_KINDS)
            + " or {kind: ..., fraction: ...} (parameters/macs also take narrow_heads: true|false)",
        },
        "sparsity": _FRACTION,
        "weights": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {"anyOf": [_AXIS, {"type": "null"}]},
                },
            ],
            "x-expected": "a parameter name, a list of names, or a mapping 'name: target' (null: the entry's)",
        },
        "plugins": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"},
            "x-expected": "a list of 'package.module:function' names",
        },
        "admm": {
            "type": "object",
            "properties": {"rho": {"type": "number", "exclusiveMinimum": 0, "x-expected": "a number > 0"}},
            "additionalProperties": False,
            "x-expected": "a mapping {rho: <number > 0>}",
        },
    },
    "required": ["weights"],
    "additionalProperties": False,
}


def is_native(spec: Mapping[str, Any]) -> bool:
    """A ``pruners:`` entry in native syntax: no ``class:`` (or ``class: Pruner``) and an axis key."""
    if spec.get("class", NATIVE_CLASS) != NATIVE_CLASS:
        return False
    return any(key in spec for key in NATIVE_KEYS)


def as_mapping(value: Any) -> dict[str, Any]:
    return {"kind": value} if isinstance(value, str) else dict(value)


def resolved_axes(args: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every axis as a mapping: the entry's own, else its preset's, else the default."""
    preset = PRESETS.get(str(args.get("preset")), {})
    axes: dict[str, dict[str, Any]] = {}
    for axis in AXES:
        value = args.get(axis, preset.get(axis, DEFAULTS.get(axis)))
        if value is not None:
            axes[axis] = as_mapping(value)
    if "admm" in args or "admm" in preset:
        axes["admm"] = {**preset.get("admm", {}), **dict(args.get("admm") or {})}
    return axes


def final_fraction(args: Mapping[str, Any]) -> float | None:
    """The level the schedule ends at: ``sparsity`` or the objective's ``fraction`` (N:M: 1 - N/M)."""
    if "sparsity" in args:
        return float(args["sparsity"])
    objective = args.get("objective")
    if isinstance(objective, Mapping) and "fraction" in objective:
        return float(objective["fraction"])
    target = resolved_axes(args).get("target", {})
    if target.get("kind") == "n:m" and isinstance(target.get("n"), int) and isinstance(target.get("m"), int):
        return 1 - target["n"] / target["m"] if target["m"] else None
    return None


def counts_steps(args: Mapping[str, Any]) -> bool:
    """Whether the entry's events are absolute training steps (``schedule: {start_step, ...}``),
    which the epochs of its policy only bound (Neural Compressor's configs compile to these)."""
    schedule = args.get("schedule")
    return isinstance(schedule, Mapping) and schedule.get("start_step") is not None
