"""Rules a JSON Schema cannot express: relations between arguments and Distiller's asserts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunecli.errors import ProblemCollector, SourceLocation

from .catalog import ClassSpec
from .model import Component
from .timeline import agp_span

Locate = Callable[..., SourceLocation]
Path = tuple[Any, ...]
#: Guard against typos such as ending_epoch: 100000000 (each active epoch is materialised).
MAX_ACTIVE_EPOCHS = 100_000
ComponentCheck = Callable[[ClassSpec, dict[str, Any], str, Path, Locate, ProblemCollector], None]


def _agp_order(
    cls: ClassSpec, args: dict[str, Any], owner: str, base: Path, locate: Locate, p: ProblemCollector
) -> None:
    initial, final = args.get("initial_sparsity"), args.get("final_sparsity")
    if final <= initial:
        p.add(
            f"{owner}: final_sparsity ({final}) must be greater than initial_sparsity ({initial})",
            locate((*base, "final_sparsity")),
            "AGP only increases sparsity; for a fixed level use a one-shot pruner",
        )


def _blocks(
    cls: ClassSpec, args: dict[str, Any], owner: str, base: Path, locate: Locate, p: ProblemCollector
) -> None:
    if args.get("group_type") != "Blocks":
        return
    shape = (args.get("kwargs") or {}).get("block_shape")
    if shape is None:
        p.add(
            f"{owner}: group_type Blocks needs kwargs.block_shape",
            locate((*base, "group_type")),
            "add 'kwargs: {block_shape: [1, 8, 1, 1]}' ([<repetitions>, <depth>, <height>, <width>])",
        )
    elif shape[2] != 1 or shape[3] != 1:
        p.add(
            f"{owner}: block_shape {shape} is not supported: block height and width must be 1",
            locate((*base, "kwargs", "block_shape")),
            "use [<repetitions>, <depth>, 1, 1]",
        )


def _star_threshold(
    cls: ClassSpec, args: dict[str, Any], owner: str, base: Path, locate: Locate, p: ProblemCollector
) -> None:
    if "*" not in args["thresholds"]:
        p.add(
            f"{owner}: thresholds needs a '*' entry (the default threshold; Distiller asserts it)",
            locate((*base, "thresholds"), key=True),
            "add \"'*': 0.0\" to thresholds",
        )


def _range_order(
    cls: ClassSpec, args: dict[str, Any], owner: str, base: Path, locate: Locate, p: ProblemCollector
) -> None:
    low, high = args["sparsity_range"]
    if low > high:
        p.add(
            f"{owner}: sparsity_range [{low}, {high}] is reversed",
            locate((*base, "sparsity_range")),
            f"write [{high}, {low}]",
        )


def _gammas(
    cls: ClassSpec, args: dict[str, Any], owner: str, base: Path, locate: Locate, p: ProblemCollector
) -> None:
    if len(args["milestones"]) != len(args["gammas"]):
        p.add(
            f"{owner}: {len(args['milestones'])} milestones but {len(args['gammas'])} gammas",
            locate((*base, "gammas")),
            "give one gamma per milestone",
        )


def _unique_weights(
    cls: ClassSpec, args: dict[str, Any], owner: str, base: Path, locate: Locate, p: ProblemCollector
) -> None:
    for arg in cls.name_list_args:
        names = args.get(arg)
        if not isinstance(names, list):
            continue
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                p.add(
                    f"{owner}: '{name}' is listed twice in {arg} (entries {seen[name] + 1} and {i + 1})",
                    locate((*base, arg, i)),
                    "remove the repeated entry",
                )
            seen.setdefault(name, i)


#: (applies?, check) pairs run on every valid component.
COMPONENT_CHECKS: list[tuple[Callable[[ClassSpec], bool], ComponentCheck]] = [
    (lambda c: c.target == "agp", _agp_order),
    (lambda c: "group_type" in c.schema.get("properties", {}), _blocks),
    (lambda c: c.name == "MagnitudeParameterPruner", _star_threshold),
    (lambda c: c.target == "random_range", _range_order),
    (lambda c: c.name == "MultiStepMultiGammaLR", _gammas),
    (lambda c: bool(c.name_list_args), _unique_weights),
]


def check_component(
    cls: ClassSpec,
    args: dict[str, Any],
    *,
    owner: str,
    base: Path,
    locate: Locate,
    problems: ProblemCollector,
) -> None:
    for applies, check in COMPONENT_CHECKS:
        if applies(cls):
            check(cls, args, owner, base, locate, problems)


def check_policy_args(
    kind: str, args: dict[str, Any], owner: str, base: Path, locate: Locate, problems: ProblemCollector
) -> bool:
    if kind == "pruner" and args.get("mask_gradients") and not args.get("mask_on_forward_only"):
        problems.add(
            f"{owner}: mask_gradients needs mask_on_forward_only: true (Distiller raises otherwise)",
            locate((*base, "mask_gradients")),
            "add 'mask_on_forward_only: true' or drop mask_gradients",
        )
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def epoch_list(
    value: Any, path: Path, where: str, locate: Locate, problems: ProblemCollector
) -> tuple[list[int], int, int, None] | None:
    if not isinstance(value, list) or not value:
        problems.add(
            f"{where}: 'epochs' must be a non-empty list of epoch numbers, got {value!r}",
            locate(path),
            "write e.g. 'epochs: [0]' or 'epochs: [30, 32]'",
        )
        return None
    for i, epoch in enumerate(value):
        if not _is_int(epoch) or epoch < 0:
            problems.add(
                f"{where}: epochs[{i}] must be an epoch number >= 0, got {epoch!r}",
                locate((*path, i)),
                "use 0, 1, 2, ...",
            )
            return None
        if i and epoch <= value[i - 1]:
            problems.add(
                f"{where}: epochs must be strictly increasing; {epoch} follows {value[i - 1]}",
                locate((*path, i)),
                "sort the list and remove repeats",
            )
            return None
    return list(value), value[0], value[-1] + 1, None


def epoch_range(
    entry: dict[str, Any], path: Path, where: str, locate: Locate, problems: ProblemCollector
) -> tuple[list[int], int, int, int] | None:
    ok = True
    for key in ("starting_epoch", "ending_epoch", "frequency"):
        if key not in entry:
            problems.add(
                f"{where}: missing '{key}' (starting_epoch, ending_epoch and frequency go together)",
                locate(path),
                f"add '{key}: <integer>' or use 'epochs: [...]'",
            )
            ok = False
        elif not _is_int(entry[key]):
            problems.add(f"{where}: '{key}' must be an integer, got {entry[key]!r}", locate((*path, key)))
            ok = False
    if not ok:
        return None
    start, end, freq = entry["starting_epoch"], entry["ending_epoch"], entry["frequency"]
    if start < 0:
        problems.add(f"{where}: starting_epoch must be >= 0, got {start}", locate((*path, "starting_epoch")))
        return None
    if end <= start:
        problems.add(
            f"{where}: ending_epoch ({end}) must be greater than starting_epoch ({start}); ending_epoch is exclusive",
            locate((*path, "ending_epoch")),
            f"for a single epoch write 'ending_epoch: {start + 1}' or 'epochs: [{start}]'",
        )
        return None
    if freq <= 0:
        problems.add(
            f"{where}: frequency must be >= 1, got {freq}",
            locate((*path, "frequency")),
            "use 1 to run every epoch",
        )
        return None
    if freq > end - start:
        problems.add(
            f"{where}: frequency ({freq}) is larger than the range {start}..{end - 1} (Distiller asserts it is not)",
            locate((*path, "frequency")),
            f"use a frequency <= {end - start}, or 'epochs: [{start}]'",
        )
        return None
    if (end - start) // freq > MAX_ACTIVE_EPOCHS:
        problems.add(
            f"{where}: {start}..{end - 1} every {freq} is more than {MAX_ACTIVE_EPOCHS} active epochs",
            locate((*path, "ending_epoch")),
            "check ending_epoch (it counts epochs, not steps)",
        )
        return None
    return list(range(start, end, freq)), start, end, freq


def check_policy_timing(
    comp: Component,
    epochs: list[int],
    start: int,
    end: int,
    freq: int | None,
    where: str,
    path: Path,
    locate: Locate,
    problems: ProblemCollector,
) -> bool:
    """Pruners whose formulas use the frequency (AGP, Baidu RNN) need a range with span > 0."""
    from .catalog import lookup

    cls = lookup(comp.class_name)
    if cls is None or not cls.needs_range:
        return True
    if freq is None:
        hint = "write the range form: starting_epoch, ending_epoch (exclusive) and frequency"
        steps = {b - a for a, b in zip(epochs, epochs[1:], strict=False)}
        if len(steps) == 1:
            step = steps.pop()
            hint = (
                f"write 'starting_epoch: {epochs[0]}', 'ending_epoch: {epochs[-1] + 1}', 'frequency: {step}'"
            )
        problems.add(
            f"{where}: {comp.class_name} '{comp.instance}' needs starting_epoch/ending_epoch/frequency, "
            "not an epochs list (its schedule uses the frequency)",
            locate((*path, "epochs"), key=True),
            hint,
        )
        return False
    if cls.target == "agp" and agp_span(start, end, freq) <= 0:
        problems.add(
            f"{where}: AGP pruner '{comp.instance}' prunes only at epoch {start}: span "
            f"((ending_epoch - starting_epoch - 1) // frequency) * frequency is 0 (Distiller asserts span > 0)",
            locate((*path, "ending_epoch")),
            f"set ending_epoch to at least {start + freq + 1} so that it prunes at two epochs or more",
        )
        return False
    return True
