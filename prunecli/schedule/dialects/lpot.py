"""Intel LPOT's pruning YAML (``pruning: {train: ..., approach: {weight_compression: ...}}``).

Each ``!Pruner`` entry becomes one native engine entry (docs/dialects.md has the table):
``basic_magnitude`` is element pruning by |w| with a linear ramp from ``initial_sparsity`` to
``target_sparsity`` over the pruner's epochs (``update_frequency`` epochs apart);
``gradient_sensitivity`` ranks output rows (input columns with ``transpose``) by |w * grad|; ``group_lasso``
is ``basic_magnitude`` trained with LPOT's group-lasso gradient, which with LPOT's 1x1 tile
pattern is an L1 term of strength ``alpha`` (an ``L1Regularizer`` over the same epochs).

``train:`` becomes run settings (:data:`Schedule.training`) that ``prunecli run`` layers under the
config file and the command line: data set and transforms, batch size, criterion, optimizer,
epochs and steps per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prunecli.schedule.model import Schedule
from prunecli.schedule.names import ALL_PRUNABLE

from . import Dialect, register_dialect
from .common import Path, Reader, compile_document

TOP_LEVEL = ("model", "version", "device", "pruning", "evaluation", "tuning")
PRUNING_KEYS = ("train", "approach")
GLOBAL_KEYS = (
    "initial_sparsity",
    "target_sparsity",
    "start_epoch",
    "end_epoch",
    "update_frequency",
    "pruners",
)
PRUNER_KEYS = (
    "prune_type",
    "names",
    "initial_sparsity",
    "target_sparsity",
    "start_epoch",
    "end_epoch",
    "update_frequency",
    "method",
    "parameters",
)
#: LPOT's defaults for weight_compression (lpot/conf/config.py)
DEFAULTS = {"initial_sparsity": 0.0, "target_sparsity": 0.97, "start_epoch": 0, "end_epoch": 4}
PRUNE_TYPES = ("basic_magnitude", "gradient_sensitivity", "group_lasso")
#: prune_type -> the engine axes of its native entry
AXES: dict[str, dict[str, Any]] = {
    "basic_magnitude": {"target": "element", "metric": "l1", "allocation": "uniform"},
    "gradient_sensitivity": {"target": "filters", "metric": "taylor", "allocation": "uniform"},
    "group_lasso": {"target": "element", "metric": "l1", "allocation": "uniform"},
}
PARAMETERS = {
    "basic_magnitude": (),
    "gradient_sensitivity": ("transpose", "normalize", "importance_metric"),
    "group_lasso": ("alpha", "pattern"),
}
TRAIN_KEYS = ("optimizer", "criterion", "dataloader", "start_epoch", "end_epoch", "iteration", "frequency")
DATALOADER_KEYS = ("batch_size", "dataset", "transform", "shuffle")
#: LPOT data set name -> (prunecli data set, whether LPOT's transform list applies)
DATASETS = {
    "ImageFolder": ("imagefolder", True),
    "CIFAR10": ("cifar10", False),
    "CIFAR100": ("cifar100", False),
    "MNIST": ("mnist", False),
}
#: LPOT's PyTorch transforms prunecli builds -> (required arguments, optional ones)
TRANSFORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "RandomResizedCrop": (("size",), ("scale", "ratio")),
    "RandomHorizontalFlip": ((), ("p",)),
    "RandomCrop": (("size",), ("padding",)),
    "Resize": (("size",), ()),
    "CenterCrop": (("size",), ()),
    "ToTensor": ((), ()),
    "Normalize": (("mean", "std"), ()),
}
OPTIMIZERS = {
    "SGD": ("sgd", ("learning_rate", "momentum", "weight_decay", "nesterov")),
    "Adam": ("adam", ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay")),
}
CRITERIA = ("CrossEntropyLoss",)

_WC: Path = ("pruning", "approach", "weight_compression")


def detect(document: Any) -> bool:
    """LPOT's file has a top-level ``pruning:`` (Distiller's never does) that is not Neural
    Compressor's ``weight_compression_v2``."""
    if not isinstance(document, dict) or "pruning" not in document:
        return False
    pruning = document["pruning"]
    approach = pruning.get("approach") if isinstance(pruning, dict) else None
    return not (isinstance(approach, dict) and "weight_compression_v2" in approach)


def compile_lpot(document: Any, locate: Any, path: str, text: str) -> Schedule:
    reader = Reader(locate, "Intel LPOT pruning")
    reader.keys(document, (), TOP_LEVEL, "an LPOT file")
    for ignored in ("evaluation", "tuning"):
        if ignored in document:
            reader.warn(
                f"'{ignored}' is not used: prunecli run evaluates top-1 on the data set's validation split",
                (ignored,),
                f"remove '{ignored}:' to silence this",
            )
    pruning = reader.mapping(document.get("pruning"), ("pruning",), "pruning", "indent 'approach:' under it")
    pruners: dict[str, Any] = {}
    regularizers: dict[str, Any] = {}
    policies: list[dict[str, Any]] = []
    aliases: dict[Path, Path] = {}
    training: dict[str, Any] | None = None
    if pruning is not None:
        reader.keys(pruning, ("pruning",), PRUNING_KEYS, "pruning")
        if "train" in pruning:
            training = _training(reader, pruning["train"], document.get("device"))
        approach = reader.mapping(pruning.get("approach"), ("pruning", "approach"), "approach", "")
        if approach is not None:
            reader.keys(approach, ("pruning", "approach"), ("weight_compression",), "approach")
            if "weight_compression" not in approach:
                reader.add(
                    "no 'weight_compression:' under pruning.approach: nothing would be pruned",
                    ("pruning", "approach"),
                    "add 'approach: {weight_compression: {target_sparsity: ..., pruners: [...]}}'",
                    key=True,
                )
            else:
                _weight_compression(
                    reader, approach["weight_compression"], pruners, regularizers, policies, aliases
                )
    else:
        reader.add(
            "no 'pruning:' section", ("pruning",), "write 'pruning: {approach: {weight_compression: ...}}'"
        )
    document_out = {"version": 1, "pruners": pruners, "regularizers": regularizers, "policies": policies}
    return compile_document(
        document_out, aliases, reader, path=path, text=text, dialect="lpot", training=training
    )


def _weight_compression(
    reader: Reader,
    body: Any,
    pruners: dict[str, Any],
    regularizers: dict[str, Any],
    policies: list[dict[str, Any]],
    aliases: dict[Path, Path],
) -> None:
    wc = reader.mapping(body, _WC, "weight_compression", "indent its keys under it")
    if wc is None:
        return
    reader.keys(wc, _WC, GLOBAL_KEYS, "weight_compression")
    defaults = {
        "initial_sparsity": reader.fraction(wc, "initial_sparsity", _WC, DEFAULTS["initial_sparsity"]),
        "target_sparsity": reader.fraction(wc, "target_sparsity", _WC, DEFAULTS["target_sparsity"]),
        "start_epoch": reader.integer(wc, "start_epoch", _WC, DEFAULTS["start_epoch"]),
        "end_epoch": reader.integer(wc, "end_epoch", _WC, DEFAULTS["end_epoch"]),
        "update_frequency": _frequency(reader, wc, _WC, 1),
    }
    entries = wc.get("pruners")
    if not isinstance(entries, list) or not entries:
        reader.add(
            "weight_compression needs a non-empty 'pruners:' list of '- !Pruner' entries",
            (*_WC, "pruners") if "pruners" in wc else _WC,
            "add 'pruners:' with '- !Pruner {prune_type: basic_magnitude, names: [...]}'",
            key="pruners" not in wc,
        )
        return
    for index, entry in enumerate(entries):
        _pruner(reader, index, entry, defaults, pruners, regularizers, policies, aliases)


def _frequency(reader: Reader, body: Mapping[str, Any], path: Path, default: int | None) -> int | None:
    """``update_frequency`` in epochs; LPOT allows fractions (0.1 in its example): every epoch then."""
    value = body.get("update_frequency")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        reader.add(
            f"update_frequency must be a number of epochs > 0, got {value!r}",
            (*path, "update_frequency"),
            "write e.g. 'update_frequency: 1'",
        )
        return None
    return max(1, math.floor(value))


def _pruner(
    reader: Reader,
    index: int,
    entry: Any,
    defaults: dict[str, Any],
    pruners: dict[str, Any],
    regularizers: dict[str, Any],
    policies: list[dict[str, Any]],
    aliases: dict[Path, Path],
) -> None:
    path = (*_WC, "pruners", index)
    if not isinstance(entry, dict):
        reader.add(
            f"pruner #{index + 1} must be a '!Pruner' mapping, got {entry!r}",
            path,
            "write '- !Pruner' and indent prune_type, names, ... under it",
        )
        return
    reader.keys(entry, path, PRUNER_KEYS, "a !Pruner entry")
    prune_type = entry.get("prune_type", "basic_magnitude")
    if prune_type not in PRUNE_TYPES:
        reader.unknown(
            f"prune_type {prune_type!r}",
            prune_type,
            PRUNE_TYPES,
            (*path, "prune_type"),
            "prune_type is one of",
        )
        return
    method = entry.get("method", "per_tensor")
    if method != "per_tensor":
        reader.add(
            f"method {method!r} is not supported (each tensor gets one magnitude threshold)",
            (*path, "method"),
            "write 'method: per_tensor' or leave it out",
        )
    value = {k: (entry[k] if k in entry and entry[k] is not None else defaults[k]) for k in defaults}
    initial = reader.fraction(entry, "initial_sparsity", path, value["initial_sparsity"])
    target = reader.fraction(entry, "target_sparsity", path, value["target_sparsity"])
    start = reader.integer(entry, "start_epoch", path, value["start_epoch"])
    end = reader.integer(entry, "end_epoch", path, value["end_epoch"])
    freq = _frequency(reader, entry, path, value["update_frequency"])
    names = reader.names(entry, "names", path)
    params = _parameters(reader, entry, path, prune_type)
    if None in (initial, target, start, end, freq, names, params):
        return
    assert initial is not None and target is not None and start is not None and end is not None
    assert freq is not None and names is not None and params is not None
    where = {k: (*path, k) if k in entry else path for k in ("initial_sparsity", "start_epoch")}
    if not reader.in_order(
        ("initial_sparsity", initial, where["initial_sparsity"]),
        ("target_sparsity", target),
        "above",
        "the ramp goes up: initial_sparsity <= target_sparsity",
    ) or not reader.in_order(
        ("start_epoch", start, where["start_epoch"]),
        ("end_epoch", end),
        "after",
        "pruning runs on epochs start_epoch..end_epoch: start_epoch <= end_epoch",
    ):
        return
    name = f"lpot_{index}"
    axes = dict(AXES[prune_type])
    if prune_type == "gradient_sensitivity" and params.get("transpose"):
        axes["target"] = "channels"
    schedule = {"kind": "linear", "initial": initial} if end > start else {"kind": "oneshot"}
    pruners[name] = {**axes, "schedule": schedule, "sparsity": target, "weights": names or [ALL_PRUNABLE]}
    aliases[("pruners", name)] = path
    aliases[("pruners", name, "weights")] = (*path, "names")
    aliases[("pruners", name, "sparsity")] = (*path, "target_sparsity")
    aliases[("pruners", name, "schedule")] = path
    policy_index = len(policies)
    # LPOT recomputes masks on epochs start..end inclusive; Distiller's ending_epoch is exclusive
    policies.append(
        {
            "pruner": {"instance_name": name},
            "starting_epoch": start,
            "ending_epoch": end + 1,
            "frequency": min(freq, end + 1 - start),
        }
    )
    aliases[("policies", policy_index)] = path
    if prune_type == "group_lasso":
        regularizer = f"{name}_group_lasso"
        regularizers[regularizer] = {
            "class": "L1Regularizer",
            "reg_regims": {weight: params["alpha"] for weight in (names or [ALL_PRUNABLE])},
        }
        aliases[("regularizers", regularizer)] = (*path, "parameters")
        aliases[("policies", len(policies))] = path
        policies.append(
            {
                "regularizer": {"instance_name": regularizer},
                "starting_epoch": start,
                "ending_epoch": end + 1,
                "frequency": 1,
            }
        )


def _parameters(
    reader: Reader, entry: Mapping[str, Any], path: Path, prune_type: str
) -> dict[str, Any] | None:
    ppath = (*path, "parameters")
    params = reader.mapping(entry.get("parameters"), ppath, "parameters", "write 'parameters: {alpha: 0.01}'")
    if params is None:
        return None
    allowed = PARAMETERS[prune_type]
    reader.keys(params, ppath, allowed, f"the parameters of {prune_type}" if allowed else "parameters")
    if prune_type == "group_lasso":
        alpha = params.get("alpha")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0:
            reader.add(
                f"group_lasso needs parameters.alpha, a number > 0, got {alpha!r}",
                (*ppath, "alpha") if "alpha" in params else path,
                "write 'parameters: {alpha: 0.006}'",
            )
            return None
        pattern = params.get("pattern", "tile_pattern_1x1")
        if pattern != "tile_pattern_1x1":
            reader.add(
                f"pattern {pattern!r} is not supported: LPOT's pruners use tile_pattern_1x1",
                (*ppath, "pattern"),
                "leave the pattern out (or write tile_pattern_1x1)",
            )
            return None
    if prune_type == "gradient_sensitivity":
        metric = params.get("importance_metric", "abs_gradient")
        if metric not in ("abs_gradient", "weighted_gradient"):
            reader.add(
                f"importance_metric {metric!r} is not one of abs_gradient, weighted_gradient",
                (*ppath, "importance_metric"),
                "write 'importance_metric: abs_gradient'",
            )
            return None
    return dict(params)


def _training(reader: Reader, body: Any, device: Any) -> dict[str, Any] | None:
    """``pruning.train`` as run settings (the run configuration's keys, docs/run.md)."""
    base: Path = ("pruning", "train")
    train = reader.mapping(body, base, "train", "indent optimizer, criterion and dataloader under it")
    if train is None:
        return None
    reader.keys(train, base, TRAIN_KEYS, "train")
    settings: dict[str, Any] = {}
    start = reader.integer(train, "start_epoch", base, 0)
    end = reader.integer(train, "end_epoch", base, None, minimum=1)
    if start:
        reader.add(
            f"train.start_epoch {start}: prunecli counts a run's epochs from 0",
            (*base, "start_epoch"),
            "write 'start_epoch: 0' (pruning epochs stay absolute), or resume a run with 'prunecli run --resume'",
        )
    if end is not None:
        settings["epochs"] = end
    iteration = reader.integer(train, "iteration", base, None, minimum=1)
    if iteration is not None:
        settings["max_steps_per_epoch"] = iteration
    reader.integer(train, "frequency", base, None, minimum=1)
    if device in ("cpu", "gpu"):
        settings["device"] = "cuda" if device == "gpu" else "cpu"
    _optimizer(reader, train, base, settings)
    _criterion(reader, train, base)
    _dataloader(reader, train, base, settings)
    return settings


def _single(
    reader: Reader, body: Any, path: Path, what: str, known: Any, example: str
) -> tuple[str, Any] | None:
    """``{Name: {args}}`` with exactly one known name."""
    if not isinstance(body, dict) or len(body) != 1:
        reader.add(f"{what} must name exactly one class, e.g. {example}", path, f"write '{example}'")
        return None
    name, args = next(iter(body.items()))
    if name not in known:
        reader.unknown(f"{what} {name!r}", name, known, (*path, name), f"{what} is one of", key=True)
        return None
    args = reader.mapping(args, (*path, name), f"{what} {name}", "indent its arguments under it")
    return None if args is None else (str(name), args)


def _optimizer(reader: Reader, train: Mapping[str, Any], base: Path, settings: dict[str, Any]) -> None:
    path = (*base, "optimizer")
    if "optimizer" not in train:
        reader.add(
            "train needs an 'optimizer:'", base, "add 'optimizer: {SGD: {learning_rate: 0.1}}'", key=True
        )
        return
    found = _single(reader, train["optimizer"], path, "optimizer", OPTIMIZERS, "{SGD: {learning_rate: 0.1}}")
    if found is None:
        return
    name, args = found
    kind, allowed = OPTIMIZERS[name]
    reader.keys(args, (*path, name), allowed, f"optimizer {name}")
    numbers = {k: v for k, v in args.items() if k in allowed and k not in ("nesterov", "amsgrad")}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            reader.add(
                f"{key} must be a number >= 0, got {value!r}", (*path, name, key), f"write e.g. '{key}: 0.1'"
            )
            return
    if "learning_rate" not in args:
        reader.add(
            f"optimizer {name} needs learning_rate", (*path, name), "add 'learning_rate: 0.1'", key=True
        )
        return
    settings.update(
        optimizer=kind, lr=float(args["learning_rate"]), weight_decay=float(args.get("weight_decay", 0.0))
    )
    extra: dict[str, Any] = {}
    if kind == "sgd":
        settings["momentum"] = float(args.get("momentum", 0.0))
        if "nesterov" in args:
            extra["nesterov"] = bool(args["nesterov"])
    else:
        if "beta_1" in args or "beta_2" in args:
            extra["betas"] = [float(args.get("beta_1", 0.9)), float(args.get("beta_2", 0.999))]
        if "epsilon" in args:
            extra["eps"] = float(args["epsilon"])
        if "amsgrad" in args:
            extra["amsgrad"] = bool(args["amsgrad"])
    settings["optimizer_args"] = extra


def _criterion(reader: Reader, train: Mapping[str, Any], base: Path) -> None:
    path = (*base, "criterion")
    if "criterion" not in train:
        reader.add("train needs a 'criterion:'", base, "add 'criterion: {CrossEntropyLoss: {}}'", key=True)
        return
    found = _single(reader, train["criterion"], path, "criterion", CRITERIA, "{CrossEntropyLoss: {}}")
    if found is None:
        return
    name, args = found
    reader.keys(args, (*path, name), ("reduction",), name)
    reduction = args.get("reduction")
    # LPOT's own example writes 'reduction: None', which means the default (mean)
    if reduction not in (None, "None", "mean"):
        reader.add(
            f"reduction {reduction!r} is not supported: prunecli trains on the batch-mean loss",
            (*path, name, "reduction"),
            "write 'reduction: mean' or leave it out",
        )


def _dataloader(reader: Reader, train: Mapping[str, Any], base: Path, settings: dict[str, Any]) -> None:
    path = (*base, "dataloader")
    if "dataloader" not in train:
        return  # data from the config file or --dataset
    loader = reader.mapping(train["dataloader"], path, "dataloader", "indent batch_size and dataset under it")
    if loader is None:
        return
    reader.keys(loader, path, DATALOADER_KEYS, "dataloader")
    batch = reader.integer(loader, "batch_size", path, None, minimum=1)
    if batch is not None:
        settings["batch_size"] = batch
    if "dataset" not in loader:
        reader.add(
            "dataloader needs a 'dataset:'", path, "add 'dataset: {ImageFolder: {root: DIR}}'", key=True
        )
        return
    found = _single(
        reader, loader["dataset"], (*path, "dataset"), "dataset", DATASETS, "{ImageFolder: {root: DIR}}"
    )
    if found is None:
        return
    name, args = found
    dataset, transforms_apply = DATASETS[name]
    dpath = (*path, "dataset", name)
    reader.keys(args, dpath, ("root", "train", "download"), f"dataset {name}")
    root = args.get("root")
    if not isinstance(root, str) or not root:
        reader.add(
            f"dataset {name} needs root: the folder of the data",
            dpath,
            "add 'root: /path/to/images'",
            key=True,
        )
        return
    settings.update(dataset=dataset, data_dir=root)
    if "transform" in loader:
        if not transforms_apply:
            reader.add(
                f"transform is not supported for {name}: prunecli uses that data set's standard transforms",
                (*path, "transform"),
                "remove 'transform:' (or use ImageFolder)",
                key=True,
            )
            return
        transforms = _transforms(reader, loader["transform"], (*path, "transform"))
        if transforms is not None:
            settings["dataset_options"] = {"transforms": transforms}


def _transforms(reader: Reader, body: Any, path: Path) -> list[list[Any]] | None:
    """LPOT's ordered ``{Name: {args}}`` mapping as ``[[name, args], ...]`` (plain data)."""
    transforms = reader.mapping(body, path, "transform", "write 'transform: {ToTensor: {}}'")
    if transforms is None:
        return None
    out: list[list[Any]] = []
    for name, args in transforms.items():
        if name not in TRANSFORMS:
            reader.unknown(f"transform {name!r}", name, TRANSFORMS, (*path, name), "transforms", key=True)
            return None
        args = reader.mapping(args, (*path, name), f"transform {name}", "indent its arguments under it")
        if args is None:
            return None
        required, optional = TRANSFORMS[name]
        reader.keys(args, (*path, name), (*required, *optional), f"transform {name}")
        missing = [key for key in required if key not in args]
        if missing:
            reader.add(
                f"transform {name} needs {', '.join(missing)}",
                (*path, name),
                f"write e.g. '{name}: {{{', '.join(f'{k}: ...' for k in required)}}}'",
                key=True,
            )
            return None
        out.append([name, dict(args)])
    return out


LPOT = register_dialect(
    Dialect(name="lpot", title="Intel LPOT pruning YAML", detect=detect, compile=compile_lpot)
)
