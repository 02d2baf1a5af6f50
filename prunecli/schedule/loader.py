"""Read a Distiller schedule into a validated :class:`Schedule`, reporting every mistake at once."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunecli.errors import ProblemCollector, ScheduleError, SourceLocation

from . import semantics
from .catalog import SPARSITY, STATS_ARG, catalog, classes_in, lookup
from .checks import schema_problems, suggest
from .classify import classify
from .dialects import detect_dialect
from .model import POLICY_KINDS, SECTIONS, Component, Policy, Schedule
from .native import NATIVE_CLASS, is_native
from .yamlio import SCHEDULE_MAPPING_TAGS, kind_of, load_yaml

TOP_LEVEL_KEYS = ("version", *SECTIONS, "policies")
RANGE_KEYS = ("starting_epoch", "ending_epoch", "frequency")
POLICY_KEYS = (*POLICY_KINDS, *RANGE_KEYS, "epochs")

#: Section -> the policy key that uses its instances (reverse of POLICY_KINDS).
SECTION_KIND = {section: kind for kind, section in POLICY_KINDS.items()}

#: Policy ``args`` each kind accepts (Distiller's PruningPolicy / RegularizationPolicy).
_FLAG = {"type": "boolean", "x-expected": "true or false"}
POLICY_ARGS_SCHEMAS: dict[str, dict[str, Any]] = {
    "pruner": {
        "type": "object",
        "properties": {
            "levels": {
                "type": "object",
                "additionalProperties": SPARSITY,
                "x-expected": "a mapping 'parameter name: sparsity in [0, 1)'",
            },
            "keep_mask": _FLAG,
            "mini_batch_pruning_frequency": {
                "type": "integer",
                "minimum": 0,
                "x-expected": "an integer >= 0 (0 = only at epoch begin)",
            },
            "mask_on_forward_only": _FLAG,
            "mask_gradients": _FLAG,
            "use_double_copies": _FLAG,
            "discard_masks_at_minibatch_end": _FLAG,
            "skip_first_minibatch": _FLAG,
            "fold_batchnorm": _FLAG,
        },
        "additionalProperties": False,
    },
    "regularizer": {
        "type": "object",
        "properties": {"keep_mask": _FLAG},
        "additionalProperties": False,
    },
}


class NotAScheduleError(ScheduleError):
    """The file is valid YAML of another Distiller kind (statistics, AMC network lists)."""

    def __init__(self, message: str, *, classification: str, **kwargs: Any) -> None:
        self.classification = classification
        super().__init__(message, **kwargs)


def load_schedule(
    source: str | os.PathLike[str],
    *,
    text: str | None = None,
    strict: bool = False,
    pruner: str | None = None,
) -> Schedule:
    """Parse and validate a schedule file (or ``text``, named ``source`` in messages).

    Raises :class:`ScheduleError` listing every problem with its file:line:column, or
    :class:`NotAScheduleError` for Distiller YAML files that are not schedules. A key given twice
    in one mapping keeps its last value, as Distiller's loader did, and is listed in
    ``Schedule.warnings``; with ``strict`` it is refused instead. ``pruner`` names the NNI pruner
    for an NNI config_list that does not name one (``prunecli run --pruner``).
    """
    name = os.fspath(source)
    duplicates = "error" if strict else "last-wins"
    if text is None:
        data, locate = load_yaml(
            Path(name),
            source_name=name,
            error_type=ScheduleError,
            what="schedule",
            duplicates=duplicates,
            mapping_tags=SCHEDULE_MAPPING_TAGS,
            require_mapping=False,
        )
        with open(name, encoding="utf-8-sig", errors="replace") as fh:
            raw = fh.read()
    else:
        data, locate = load_yaml(
            text,
            source_name=name,
            error_type=ScheduleError,
            what="schedule",
            duplicates=duplicates,
            mapping_tags=SCHEDULE_MAPPING_TAGS,
            require_mapping=False,
        )
        raw = text
    options = {"pruner": pruner} if pruner is not None else {}
    schedule = build_schedule(data, locate, path=name, text=raw, options=options)
    schedule.warnings.extend(locate.warnings)
    return schedule


def build_schedule(
    data: Any,
    locate: Callable[..., SourceLocation],
    *,
    path: str,
    text: str,
    options: dict[str, Any] | None = None,
) -> Schedule:
    """The schedule of a parsed document, in whichever language it is written.

    ``options`` are keyword options for the dialect's compiler (see ``Dialect.options``); one the
    document's language does not take is refused.
    """
    options = options or {}
    dialect = detect_dialect(data)
    unknown = sorted(set(options) - set(dialect.options if dialect else ()))
    if unknown:
        language = dialect.title if dialect else "Distiller schedule"
        raise ScheduleError(
            f"--{unknown[0]} does not apply to {path}: it is a {language}",
            location=SourceLocation(path, 1, 1),
            hint=f"leave out --{unknown[0]} (it names the pruner of an NNI config_list)",
        )
    if dialect is not None:
        return dialect.compile(data, locate, path, text, **options)
    if not isinstance(data, dict):
        raise ScheduleError(
            f"expected a mapping of 'key: value' lines at the top level, got {kind_of(data)}",
            location=locate(()),
            hint="a schedule starts with top-level keys such as 'version: 1', 'pruners:' and 'policies:' "
            "(or is an NNI config_list: a list of '- op_types: [...]' entries)",
        )
    return build_distiller_schedule(data, locate, path=path, text=text)


def build_distiller_schedule(
    data: dict[str, Any], locate: Callable[..., SourceLocation], *, path: str, text: str
) -> Schedule:
    """A document in Distiller's language (dialects compile theirs into one and call this)."""
    kind = classify(data)
    if kind is not None:
        raise NotAScheduleError(
            f"not a schedule: {kind.description}",
            classification=kind.name,
            location=SourceLocation(path, 1, 1),
        )
    problems = ProblemCollector()
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(
                f"unknown top-level key {key!r}{suggest(str(key), TOP_LEVEL_KEYS)}",
                locate((key,), key=True),
                "a schedule has: " + ", ".join(TOP_LEVEL_KEYS),
            )
    version = data.get("version")
    if "version" in data and (version != 1 or isinstance(version, bool)):
        problems.add(f"unsupported schedule version {version!r}", locate(("version",)), "write 'version: 1'")
    components, known = _components(data, locate, problems)
    _check_quantizers(components, path, problems)
    policies = _policies(data, locate, problems, components, known)
    _check_thinning_under_quantizer(components, policies, problems)
    problems.raise_if_any(ScheduleError, f"{path}: invalid schedule")
    return Schedule(
        path=path,
        text=text,
        version=version if isinstance(version, int) else None,
        components=components,
        policies=policies,
        locate=locate,
    )


# ---------------------------------------------------------------------------- components


def _components(
    data: dict[str, Any], locate: Callable[..., SourceLocation], problems: ProblemCollector
) -> tuple[dict[str, dict[str, Component]], dict[str, set[str]]]:
    """Build every section's instances. ``known`` holds every declared name, valid or not."""
    components: dict[str, dict[str, Component]] = {s: {} for s in SECTIONS}
    known: dict[str, set[str]] = {s: set() for s in SECTIONS}
    for section in SECTIONS:
        body = data.get(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            problems.add(
                f"'{section}' must be a mapping 'instance name: {{class: ..., arguments}}', got {type(body).__name__}",
                locate((section,)),
                f"write e.g. '{section}:\\n  my_instance:\\n    class: ...'",
            )
            continue
        for instance, spec in body.items():
            path = (section, instance)
            known[section].add(str(instance))
            comp = _component(section, instance, spec, path, locate, problems)
            if comp is not None:
                components[section][str(instance)] = comp
    return components, known


def _component(
    section: str,
    instance: Any,
    spec: Any,
    path: tuple[Any, ...],
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
) -> Component | None:
    if not isinstance(instance, str):
        problems.add(
            f"instance name {instance!r} must be text", locate(path, key=True), f"quote it: '{instance}'"
        )
        return None
    if not isinstance(spec, dict):
        problems.add(
            f"{section}.{instance} must be a mapping with 'class:' and its arguments, got {spec!r}",
            locate(path),
            "indent the class and arguments under the instance name",
        )
        return None
    class_name = spec.get("class")
    owner = f"{section}.{instance}"
    if section == "pruners" and is_native(spec):
        spec = {"class": NATIVE_CLASS, **spec}
        class_name = NATIVE_CLASS
    if "class" not in spec:
        problems.add(
            f"{owner}: missing 'class'",
            locate(path, key=True),
            "add 'class: <Distiller class name>'"
            + (" or the native 'target:' and 'metric:' (or 'preset:')" if section == "pruners" else ""),
        )
        return None
    if not isinstance(class_name, str):
        problems.add(f"{owner}: class must be a class name, got {class_name!r}", locate((*path, "class")))
        return None
    cls = lookup(class_name)
    if cls is None:
        hint_names = classes_in(section) or list(catalog())
        problems.add(
            f"{owner}: unknown class '{class_name}'{suggest(class_name, list(catalog()))}",
            locate((*path, "class")),
            f"classes usable under {section}: " + ", ".join(hint_names),
        )
        return None
    if cls.section != section:
        problems.add(
            f"{owner}: {class_name} is not a {SECTION_KIND[section].replace('_', ' ')} class",
            locate((*path, "class")),
            f"move it under '{cls.section}:'",
        )
        return None
    owner = f"{owner} ({class_name})"
    if cls.unsupported:
        problems.add(f"{owner}: {cls.unsupported}", locate((*path, "class")), "use another class")
        return None
    args = {k: copy.deepcopy(v) for k, v in spec.items() if k != "class"}
    if not schema_problems(cls.schema, args, owner=owner, base=path, locate=locate, problems=problems):
        return None
    semantics.check_component(cls, args, owner=owner, base=path, locate=locate, problems=problems)
    if class_name == NATIVE_CLASS and not _native_problems(args, owner, path, locate, problems):
        return None
    for arg in cls.name_list_args:
        if isinstance(args.get(arg), str):
            args[arg] = [args[arg]]
    return Component(
        section=section,
        instance=instance,
        class_name=class_name,
        args=args,
        location=locate(path, key=True),
        arg_locations={k: locate((*path, k)) for k in args},
        yaml_path=path,
    )


def _native_problems(
    args: dict[str, Any],
    owner: str,
    path: tuple[Any, ...],
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
) -> bool:
    """Unknown axis kinds and options of a native entry, located on the offending key."""
    from prunecli.engine.compile import axis_problems

    found = axis_problems(args)
    for problem in found:
        where = (*path, *problem.path) if problem.path and problem.path[0] in args else path
        key = problem.at_key or not problem.path
        problems.add(f"{owner}: {problem.message}", locate(where, key=key), problem.hint)
    return not found


# ---------------------------------------------------------------------------- quantizers

#: quantizers applied to a trained model rather than scheduled in the timeline
POST_TRAINING_QUANTIZERS = ("PostTrainLinearQuantizer",)


def _post_training_only(components: dict[str, dict[str, Component]]) -> bool:
    quantizers = components.get("quantizers", {})
    return bool(quantizers) and all(c.class_name in POST_TRAINING_QUANTIZERS for c in quantizers.values())


def resolve_stats_path(value: str, schedule_path: str) -> Path | None:
    """Distiller opens the path from the working directory; failing that, try the schedule's
    folder and each of its parents (so an example's ``../quantization/...`` works where it lies)."""
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    if candidate.is_file():
        return candidate.resolve()
    folder = Path(schedule_path).resolve().parent
    for base in (folder, *folder.parents):
        if (base / candidate).is_file():
            return (base / candidate).resolve()
    return None


def _check_quantizers(
    components: dict[str, dict[str, Component]], path: str, problems: ProblemCollector
) -> None:
    """One quantizer at most (as Distiller), and statistics files that exist, resolved to full paths."""
    quantizers = list(components.get("quantizers", {}).values())
    for extra in quantizers[1:]:
        problems.add(
            f"quantizers.{extra.instance}: only one quantizer per schedule (Distiller refuses several too)",
            extra.location,
            f"keep one of: {', '.join(q.instance for q in quantizers)}",
        )
    for comp in quantizers:
        value = comp.args.get(STATS_ARG)
        if not isinstance(value, str):
            continue
        found = resolve_stats_path(value, path)
        if found is None and not Path(path).is_file():
            continue  # text re-read from a checkpoint or report: the builder reports it if it is used
        if found is None:
            problems.add(
                f"quantizers.{comp.instance}: statistics file {value!r} not found (looked in the working "
                "directory, then the schedule's folder and its parents)",
                comp.arg_locations.get(STATS_ARG, comp.location),
                "give a path that exists, or write one with 'prunecli collect-stats MODEL --dataset NAME --out FILE'",
            )
        else:
            comp.args[STATS_ARG] = str(found)


def _rounds_weights(comp: Component) -> bool:
    """Whether a quantization-aware quantizer rounds some layer's weights (its default or an override)."""
    if comp.class_name == "NNIQuantizer":
        entries = comp.args.get("config_list") or []
        return any("weight" in (e.get("quant_types") or []) for e in entries if isinstance(e, dict))
    overrides = comp.args.get("overrides") or {}
    default = comp.args.get("bits_weights", 32)
    return default is not None or any(
        isinstance(o, dict) and o.get("bits_weights") is not None for o in overrides.values()
    )


def _check_thinning_under_quantizer(
    components: dict[str, dict[str, Component]], policies: list[Policy], problems: ProblemCollector
) -> None:
    """Thinning while quantization-aware training rounds weights cannot keep the model's function:
    the rounding's ranges (DoReFa's max|tanh(w)|, range-linear min/max, per tensor or per filter)
    include the weights that read the removed channels, so removing them moves every rounded value."""
    from .vocabulary import THINNING_CLASSES

    quantizers = components.get("quantizers", {})
    active = [
        p
        for p in policies
        if p.kind == "quantizer"
        and p.instance in quantizers
        and quantizers[p.instance].class_name not in POST_TRAINING_QUANTIZERS
        and not (quantizers[p.instance].class_name == "NNIQuantizer" and quantizers[p.instance].args.get("method") == "Naive")
        and _rounds_weights(quantizers[p.instance])
    ]
    if not active:
        return
    extensions = components.get("extensions", {})
    for policy in policies:
        comp = extensions.get(policy.instance) if policy.kind == "extension" else None
        if comp is None or comp.class_name not in THINNING_CLASSES:
            continue
        quantizer = active[0]
        problems.add(
            f"extension '{policy.instance}' thins the model at epoch {policy.epochs[0]} while quantizer "
            f"'{quantizer.instance}' rounds weights (from epoch {quantizer.epochs[0]}): the rounding ranges "
            "include the weights that read the removed channels, so thinning would change the quantized "
            "model's function",
            policy.location,
            "prune and thin in one run, then quantize in a second run started from its compact.pt "
            "(prunecli run QUANT_SCHEDULE --initial-weights RUN/compact.pt), or use PostTrainLinearQuantizer",
        )


def _quantizer_policy_ok(
    comp: Component,
    epochs: list[int],
    where: str,
    path: tuple[Any, ...],
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
) -> bool:
    """Quantization-aware training prepares the model once, from the first epoch (Distiller's rule)."""
    if comp.class_name in POST_TRAINING_QUANTIZERS:
        problems.add(
            f"{where}: {comp.class_name} '{comp.instance}' is applied after training, not on epochs",
            locate(path),
            "remove this policy entry: the quantizer runs once the training epochs are over",
        )
        return False
    if epochs and epochs[0] != 0:
        problems.add(
            f"{where}: quantizer '{comp.instance}' starts at epoch {epochs[0]}; quantization-aware "
            "training starts at epoch 0",
            locate((*path, "starting_epoch")),
            "write 'starting_epoch: 0'",
        )
        return False
    return True


# ---------------------------------------------------------------------------- policies


def _policies(
    data: dict[str, Any],
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
    components: dict[str, dict[str, Component]],
    known: dict[str, set[str]],
) -> list[Policy]:
    if "policies" not in data and _post_training_only(components):
        return []  # Distiller's post-training quantization files: applied after training
    if "policies" not in data:
        problems.add(
            "missing 'policies': nothing would ever run",
            locate(()),
            "add 'policies:' with a list of '- pruner: {instance_name: ...}' entries",
        )
        return []
    entries = data["policies"]
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        problems.add(
            f"'policies' must be a list of entries starting with '- ', got {type(entries).__name__}",
            locate(("policies",)),
            "write each policy as '- pruner: ...'",
        )
        return []
    policies = []
    for index, entry in enumerate(entries):
        policy = _policy(index, entry, locate, problems, components, known)
        if policy is not None:
            policies.append(policy)
    return policies


def _policy(
    index: int,
    entry: Any,
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
    components: dict[str, dict[str, Component]],
    known: dict[str, set[str]],
) -> Policy | None:
    path = ("policies", index)
    where = f"policy #{index + 1}"
    if not isinstance(entry, dict):
        problems.add(
            f"{where} must be a mapping (e.g. 'pruner: {{instance_name: ...}}' plus epochs), got {entry!r}",
            locate(path),
        )
        return None
    ok = True
    for key in entry:
        if key not in POLICY_KEYS:
            ok = False
            problems.add(
                f"{where}: unknown key {key!r}{suggest(str(key), POLICY_KEYS)}",
                locate((*path, key), key=True),
                "a policy has one of "
                + ", ".join(POLICY_KINDS)
                + " plus starting_epoch/ending_epoch/frequency or epochs",
            )
    kinds = [k for k in POLICY_KINDS if k in entry]
    if len(kinds) != 1:
        message = "names no component" if not kinds else "names several components (" + ", ".join(kinds) + ")"
        problems.add(
            f"{where} {message}: exactly one of " + ", ".join(POLICY_KINDS) + " is required",
            locate(path),
            "split it into one policy entry per component"
            if kinds
            else "add e.g. 'pruner: {instance_name: ...}'",
        )
        return None
    kind = kinds[0]
    instance, args = _policy_body(
        kind, entry[kind], (*path, kind), where, locate, problems, components, known
    )
    epochs = _epochs(entry, path, where, locate, problems)
    if instance is None or epochs is None or not ok:
        return None
    epoch_list, start, end, freq = epochs
    comp = components[POLICY_KINDS[kind]].get(instance)
    if comp is None:  # declared but invalid: already reported
        return None
    if not semantics.check_policy_timing(comp, epoch_list, start, end, freq, where, path, locate, problems):
        return None
    if kind == "quantizer" and not _quantizer_policy_ok(comp, epoch_list, where, path, locate, problems):
        return None
    return Policy(
        kind=kind,
        instance=instance,
        args=args or {},
        epochs=tuple(epoch_list),
        starting_epoch=start,
        ending_epoch=end,
        frequency=freq,
        order=index,
        location=locate(path),
        yaml_path=path,
    )


def _policy_body(
    kind: str,
    body: Any,
    path: tuple[Any, ...],
    where: str,
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
    components: dict[str, dict[str, Component]],
    known: dict[str, set[str]],
) -> tuple[str | None, dict[str, Any] | None]:
    section = POLICY_KINDS[kind]
    if not isinstance(body, dict):
        problems.add(
            f"{where}: '{kind}:' must hold 'instance_name: <name>', got {body!r}",
            locate(path),
            f"write '{kind}:\\n      instance_name: my_{kind}'",
        )
        return None, None
    ok = True
    for key in body:
        if key in ("instance_name", "args"):
            continue
        ok = False
        if key in (*RANGE_KEYS, "epochs"):
            problems.add(
                f"{where}: '{key}' belongs to the policy entry, not inside '{kind}:'",
                locate((*path, key), key=True),
                f"un-indent '{key}' to the level of '{kind}:'",
            )
        else:
            problems.add(
                f"{where}: unknown key {key!r} in '{kind}:'{suggest(str(key), ('instance_name', 'args'))}",
                locate((*path, key), key=True),
                f"'{kind}:' holds instance_name and optionally args",
            )
    name = body.get("instance_name")
    if "instance_name" not in body:
        problems.add(
            f"{where}: missing 'instance_name' in '{kind}:'",
            locate(path, key=True),
            f"name one of the {section}",
        )
        return None, None
    if not isinstance(name, str):
        problems.add(f"{where}: instance_name must be a name, got {name!r}", locate((*path, "instance_name")))
        return None, None
    name_loc = locate((*path, "instance_name"))
    if name not in known[section]:
        elsewhere = [s for s, names in known.items() if name in names]
        if elsewhere:
            other = SECTION_KIND[elsewhere[0]]
            problems.add(
                f"{where}: '{name}' is defined under {elsewhere[0]}, so it is a {other}, not a {kind}",
                name_loc,
                f"write '{other}:' instead of '{kind}:'",
            )
        else:
            declared = sorted(known[section])
            problems.add(
                f"{where}: no {kind} named '{name}'{suggest(name, declared)}",
                name_loc,
                f"defined {section}: "
                + (", ".join(declared) if declared else f"none (add a '{section}:' section)"),
            )
        return None, None
    args = body.get("args")
    if args is None:
        return (name if ok else None), {}
    schema = POLICY_ARGS_SCHEMAS.get(kind)
    if schema is None:
        if args:
            problems.add(
                f"{where}: {kind} policies take no 'args'",
                locate((*path, "args"), key=True),
                "remove 'args' (Distiller ignores them for this kind)",
            )
            ok = False
        return (name if ok else None), {}
    owner = f"{where} ({kind} {name})"
    if not schema_problems(schema, args, owner=owner, base=(*path, "args"), locate=locate, problems=problems):
        return None, None
    if not semantics.check_policy_args(kind, args, owner, (*path, "args"), locate, problems):
        return None, None
    return (name if ok else None), dict(args)


def _epochs(
    entry: dict[str, Any],
    path: tuple[Any, ...],
    where: str,
    locate: Callable[..., SourceLocation],
    problems: ProblemCollector,
) -> tuple[list[int], int, int, int | None] | None:
    """Distiller's CompressionScheduler.add_policy rules: a range (end exclusive) or a list."""
    present = [k for k in RANGE_KEYS if k in entry]
    if "epochs" in entry:
        if present:
            problems.add(
                f"{where}: give either 'epochs' or {'/'.join(RANGE_KEYS)}, not both",
                locate((*path, present[0]), key=True),
                "remove " + ", ".join(present) + " or remove 'epochs'",
            )
            return None
        return semantics.epoch_list(entry["epochs"], (*path, "epochs"), where, locate, problems)
    if not present:
        problems.add(
            f"{where}: no epochs: give starting_epoch, ending_epoch and frequency, or epochs: [...]",
            locate(path),
            "e.g. 'starting_epoch: 0', 'ending_epoch: 30', 'frequency: 2'",
        )
        return None
    return semantics.epoch_range(entry, path, where, locate, problems)
