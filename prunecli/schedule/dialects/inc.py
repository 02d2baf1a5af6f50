"""Intel Neural Compressor 2.x pruning configs (``WeightPruningConfig`` as a file).

Two file forms: the keyword arguments of ``WeightPruningConfig`` (global keys at the top level,
one dict per pruner in ``pruning_configs:``), or INC's YAML form
``pruning: {approach: {weight_compression_v2: {<global keys>, pruners: [!Pruner ...]}}}``. A pruner
takes every key it does not set from the global ones, then from INC's defaults.

Each pruner becomes one native engine entry whose events are absolute training steps: one at
``start_step`` and every ``pruning_frequency`` steps up to ``end_step``, the level following
``sparsity_decay_type`` (exp, linear, cube, cos) from 0 to ``target_sparsity``. Patterns map to
targets (``1x1`` element, ``NxM`` blocks of N output rows by M inputs, ``N:M`` N of every M pruned,
``channelx1``/``1xchannel`` input/output channels), ``pruning_scope`` to the allocation (global with
INC's per-op bounds, or the same fraction of each layer), ``op_names``/``excluded_op_names`` (regexes
searched in module names, Linear and convolution layers) to the entry's weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from prunecli.schedule.checks import suggest
from prunecli.schedule.model import Schedule
from prunecli.schedule.names import CLASSIFIER_HEAD, OPS_EXCLUDE_PREFIX, OPS_PREFIX

from . import Dialect, register_dialect
from .common import Path, Reader, compile_document

#: INC's defaults (neural_compressor/compression/pruner/utils.py, v2.x-v3.7)
DEFAULTS: dict[str, Any] = {
    "target_sparsity": 0.9,
    "pruning_type": "snip_momentum",
    "pattern": "4x1",
    "op_names": [],
    "excluded_op_names": [],
    "start_step": 0,
    "end_step": 0,
    "pruning_scope": "global",
    "pruning_frequency": 1,
    "min_sparsity_ratio_per_op": 0.0,
    "max_sparsity_ratio_per_op": 0.98,
    "sparsity_decay_type": "exp",
    "pruning_op_types": ["Conv", "Linear"],
    "criterion_reduce_type": "mean",
}
#: keys INC accepts that change nothing here (memory use, resuming INC's own checkpoints)
INERT = ("low_memory_usage", "resume_from_pruned_checkpoint", "criterion_reduce_type")
KEYS = (*DEFAULTS, *INERT, "reg_type", "parameters")
#: pruning_type -> the engine metric: |w|, or |w * grad| of the last step (snip) or with
#: Neural Compressor's momentum 0.9 over the steps (snip_momentum)
METRICS: dict[str, Any] = {
    "magnitude": "l1",
    "snip": {"kind": "taylor", "decay": 0.0},
    "snip_momentum": {"kind": "taylor", "decay": 0.9},
}
#: INC's other pruning types, refused by name
UNSUPPORTED_TYPES = {
    "gradient": "ranking by |grad| alone is not among the engine's metrics",
    "pattern_lock": "it keeps an existing sparsity pattern without pruning",
    "retrain_free": "it is a one-shot LLM method that needs INC's calibration loop",
    "sparse_gpt": "it is a one-shot LLM method that needs INC's calibration loop",
}
DECAYS = {"exp": "exponential", "linear": "linear", "cube": "cube", "cos": "cos"}
SCOPES = ("global", "local")
OP_TYPES = ("Conv", "Linear")
_NXM = re.compile(r"^(\d+|channel)x(\d+|channel)$")
_NM = re.compile(r"^(\d+):(\d+)$")

_V2: Path = ("pruning", "approach", "weight_compression_v2")


def detect(document: Any) -> bool:
    """``pruning_configs:`` or INC's own keys at the top level, or ``weight_compression_v2``."""
    if not isinstance(document, dict):
        return False
    pruning = document.get("pruning")
    approach = pruning.get("approach") if isinstance(pruning, dict) else None
    if isinstance(approach, dict) and "weight_compression_v2" in approach:
        return True
    if "pruners" in document or "policies" in document:
        return False
    return "pruning_configs" in document or any(
        key in document for key in ("pruning_type", "start_step", "end_step", "pruning_frequency", "pattern")
    )


def compile_inc(document: Any, locate: Any, path: str, text: str) -> Schedule:
    reader = Reader(locate, "Neural Compressor pruning")
    if "pruning" in document:
        reader.keys(document, (), ("pruning",), "a Neural Compressor YAML file")
        base: Path = _V2
        body = reader.mapping(
            document["pruning"]["approach"]["weight_compression_v2"],
            base,
            "weight_compression_v2",
            "indent the pruning keys under it",
        )
        list_key = "pruners"
    else:
        base, body, list_key = (), document, "pruning_configs"
    pruners: dict[str, Any] = {}
    policies: list[dict[str, Any]] = []
    aliases: dict[Path, Path] = {}
    if body is not None:
        reader.keys(body, base, (*KEYS, list_key), "the global pruning config")
        global_config = _config(reader, body, base, dict(DEFAULTS), strict_global=True)
        entries = body.get(list_key)
        if entries is None or entries == []:
            entries, paths = [body], [base]
        elif not isinstance(entries, list):
            reader.add(
                f"{list_key} must be a list of pruner configs, got {type(entries).__name__}",
                (*base, list_key),
                f"write '{list_key}:' with '- {{op_names: [...], target_sparsity: ...}}' entries",
            )
            entries, paths = [], []
        else:
            paths = [(*base, list_key, i) for i in range(len(entries))]
        for index, (entry, epath) in enumerate(zip(entries, paths)):
            if global_config is None:
                break
            if not isinstance(entry, dict):
                reader.add(
                    f"pruner config #{index + 1} must be a mapping, got {entry!r}",
                    epath,
                    "write '- {pruning_type: magnitude, op_names: [...]}'",
                )
                continue
            if epath != base:
                reader.keys(entry, epath, KEYS, "a pruner config")
            config = _config(reader, entry, epath, global_config, strict_global=False)
            if config is not None:
                _entry(reader, index, config, epath, pruners, policies, aliases)
    document_out = {"version": 1, "pruners": pruners, "policies": policies}
    return compile_document(document_out, aliases, reader, path=path, text=text, dialect="inc", training=None)


def _config(
    reader: Reader, body: Mapping[str, Any], path: Path, inherited: dict[str, Any], *, strict_global: bool
) -> dict[str, Any] | None:
    """One pruner's settings: its own keys over ``inherited``, each checked where it is written."""
    config = dict(inherited)
    config["_where"] = dict(inherited.get("_where", {}))
    ok = True

    def own(key: str, value: Any) -> None:
        config[key] = value
        config["_where"][key] = (*path, key)

    for key in ("target_sparsity", "min_sparsity_ratio_per_op"):
        if key in body:
            value = reader.fraction(body, key, path, None)
            ok = ok and value is not None
            own(key, value)
    if "max_sparsity_ratio_per_op" in body:
        value = body["max_sparsity_ratio_per_op"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            reader.add(
                f"max_sparsity_ratio_per_op must be in (0, 1], got {value!r}",
                (*path, "max_sparsity_ratio_per_op"),
                "write e.g. 'max_sparsity_ratio_per_op: 0.98'",
            )
            ok = False
        own("max_sparsity_ratio_per_op", value)
    for key, minimum in (("start_step", 0), ("end_step", 0), ("pruning_frequency", 1)):
        if key in body:
            value = reader.integer(body, key, path, None, minimum=minimum)
            ok = ok and value is not None
            own(key, value)
    for key, choices in (("sparsity_decay_type", list(DECAYS)), ("pruning_scope", list(SCOPES))):
        if key in body:
            value = reader.choice(body, key, path, choices, None)
            ok = ok and value is not None
            own(key, value)
    for key in ("op_names", "excluded_op_names"):
        if key in body:
            names = reader.names(body, key, path)
            ok = ok and names is not None and _regexes(reader, names or [], (*path, key))
            own(key, names)
    if "pruning_op_types" in body:
        types = reader.names(body, "pruning_op_types", path)
        bad = [t for t in types or [] if t not in OP_TYPES]
        for t in bad:
            reader.add(
                f"pruning_op_types {t!r} is not one of Conv, Linear{suggest(t, OP_TYPES)}",
                (*path, "pruning_op_types"),
                "write 'pruning_op_types: [Conv, Linear]'",
            )
        if types and not bad and set(types) != set(OP_TYPES):
            reader.add(
                f"pruning_op_types {types}: prunecli selects Linear and convolution layers together",
                (*path, "pruning_op_types"),
                "leave pruning_op_types out and name the layers in op_names (or excluded_op_names)",
            )
            bad = types
        ok = ok and types is not None and not bad
        own("pruning_op_types", types)
    if "pruning_type" in body:
        own("pruning_type", body["pruning_type"])
    if "pattern" in body:
        own("pattern", body["pattern"])
    if body.get("reg_type") is not None:
        reader.add(
            f"reg_type {body['reg_type']!r} is not supported (INC's group-lasso regularizer during pruning)",
            (*path, "reg_type"),
            "remove reg_type (and parameters.reg_coeff)",
        )
        ok = False
    return config if ok else None


def _regexes(reader: Reader, names: list[str], path: Path) -> bool:
    ok = True
    for i, name in enumerate(names):
        try:
            re.compile(name)
        except re.error as exc:
            reader.add(f"{name!r} is not a valid regular expression: {exc}", (*path, i), "fix the pattern")
            ok = False
    return ok


def _where(config: Mapping[str, Any], key: str, fallback: Path) -> Path:
    return config["_where"].get(key, fallback)


def _metric(reader: Reader, config: Mapping[str, Any], path: Path) -> Any:
    kind = config["pruning_type"]
    where = _where(config, "pruning_type", path)
    base = str(kind).removesuffix("_progressive")
    if base in METRICS and base != kind:
        reader.add(
            f"pruning_type {kind!r}: progressive masks are not supported",
            where,
            f"write 'pruning_type: {base}'",
        )
        return None
    if kind in UNSUPPORTED_TYPES:
        reader.add(
            f"pruning_type {kind!r} is not supported: {UNSUPPORTED_TYPES[kind]}",
            where,
            "pruning_type is one of: " + ", ".join(METRICS),
        )
        return None
    if kind not in METRICS:
        reader.add(
            f"unknown pruning_type {kind!r}{suggest(str(kind), [*METRICS, *UNSUPPORTED_TYPES])}",
            where,
            "pruning_type is one of: " + ", ".join(METRICS),
        )
        return None
    return METRICS[kind]


def _target(reader: Reader, config: Mapping[str, Any], path: Path) -> tuple[Any, float | None] | None:
    """The engine target of ``pattern`` and, for N:M, the sparsity it fixes."""
    pattern = str(config["pattern"])
    where = _where(config, "pattern", path)
    nm = _NM.match(pattern)
    if nm:
        pruned, run = int(nm.group(1)), int(nm.group(2))
        if not 0 < pruned < run:
            reader.add(
                f"pattern {pattern!r}: N:M prunes N of every M weights, so 0 < N < M",
                where,
                "write e.g. 'pattern: 2:4'",
            )
            return None
        return {"kind": "n:m", "n": run - pruned, "m": run}, pruned / run
    nxm = _NXM.match(pattern)
    if not nxm:
        reader.add(
            f"unknown pattern {pattern!r}",
            where,
            "write NxM (e.g. 4x1, 1x1), N:M (e.g. 2:4), channelx1 or 1xchannel",
        )
        return None
    rows, cols = nxm.groups()
    if rows == "channel" and cols == "channel":
        reader.add(
            "pattern 'channelxchannel' would prune whole layers", where, "write channelx1 or 1xchannel"
        )
        return None
    if rows == "channel":
        return ("channels" if cols == "1" else _unsupported_channel(reader, pattern, where)), None
    if cols == "channel":
        return ("filters" if rows == "1" else _unsupported_channel(reader, pattern, where)), None
    if int(rows) < 1 or int(cols) < 1:
        reader.add(f"pattern {pattern!r}: block sizes start at 1", where, "write e.g. 'pattern: 4x1'")
        return None
    if (rows, cols) == ("1", "1"):
        return "element", None
    return {"kind": "block", "shape": [int(rows), int(cols)]}, None


def _unsupported_channel(reader: Reader, pattern: str, where: Path) -> None:
    reader.add(f"pattern {pattern!r} is not supported", where, "write channelx1 or 1xchannel")
    return None


def _entry(
    reader: Reader,
    index: int,
    config: dict[str, Any],
    path: Path,
    pruners: dict[str, Any],
    policies: list[dict[str, Any]],
    aliases: dict[Path, Path],
) -> None:
    metric = _metric(reader, config, path)
    found = _target(reader, config, path)
    if metric is None or found is None or found[0] is None:
        return
    target, fixed = found
    start, end, every = config["start_step"], config["end_step"], config["pruning_frequency"]
    if not reader.in_order(
        ("start_step", start, _where(config, "start_step", path)),
        ("end_step", end),
        "after",
        "pruning runs on steps start_step..end_step: start_step <= end_step",
    ):
        return
    if metric != "l1" and start == 0:
        reader.add(
            f"pruning_type {config['pruning_type']} ranks by gradients, which do not exist before the first step",
            _where(config, "start_step", path),
            "write 'start_step: 1' (or later), or 'pruning_type: magnitude'",
        )
        return
    sparsity = config["target_sparsity"]
    written = config["_where"].get("target_sparsity")
    if fixed is not None and written is not None and written[:-1] == path and abs(sparsity - fixed) > 1e-9:
        reader.add(
            f"target_sparsity {sparsity} differs from the {fixed:g} that pattern {config['pattern']} fixes",
            config["_where"]["target_sparsity"],
            f"write 'target_sparsity: {fixed:g}' or leave it out",
        )
        return
    low, high = config["min_sparsity_ratio_per_op"], config["max_sparsity_ratio_per_op"]
    if not reader.in_order(
        ("min_sparsity_ratio_per_op", low, _where(config, "min_sparsity_ratio_per_op", path)),
        ("max_sparsity_ratio_per_op", high),
        "above",
        "lower the minimum",
    ):
        return
    if config["pruning_scope"] == "global":
        allocation: Any = {
            "kind": "global",
            "normalize": "none",
            "max_sparsity_per_layer": high,
            "min_sparsity_per_layer": low,
        }
    else:
        allocation = "uniform"
        if fixed is None:
            sparsity = min(sparsity, high)
    decay = DECAYS[config["sparsity_decay_type"]] if end > start else "oneshot"
    schedule = {"kind": decay, "every_steps": every, "start_step": start, "end_step": end}
    name = f"inc_{index}"
    entry: dict[str, Any] = {
        "target": target,
        "metric": metric,
        "allocation": allocation,
        "schedule": schedule,
        "weights": _weights(config),
    }
    if fixed is None:
        entry["sparsity"] = sparsity
    pruners[name] = entry
    aliases[("pruners", name)] = path
    aliases[("pruners", name, "weights")] = _where(config, "op_names", path)
    aliases[("policies", len(policies))] = path
    # the policy spans every epoch that can hold step end_step (an epoch has at least one step);
    # the schedule itself decides which steps are events
    policies.append(
        {"pruner": {"instance_name": name}, "starting_epoch": 0, "ending_epoch": end + 1, "frequency": 1}
    )


def _weights(config: Mapping[str, Any]) -> list[str]:
    """``ops:`` selections for op_names (``.*`` when empty), then ``ops-not:`` for each exclusion and
    for the classifier head, which Neural Compressor always leaves out."""
    include = config["op_names"] or [".*"]
    out = [OPS_PREFIX + pattern for pattern in include]
    out += [OPS_EXCLUDE_PREFIX + pattern for pattern in [*config["excluded_op_names"], CLASSIFIER_HEAD]]
    return out


INC = register_dialect(
    Dialect(
        name="inc", title="Intel Neural Compressor 2.x pruning config", detect=detect, compile=compile_inc
    )
)
