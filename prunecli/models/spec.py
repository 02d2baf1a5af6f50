"""Turn a model spec string into a model, and back into plain data for checkpoints.

Spec forms (any of them may end in ``?key=value&key=value`` keyword arguments, values read as
YAML scalars, so ``?num_classes=100&channel_multiplier=0.5`` gives an int and a float):

* ``resnet20_cifar`` -- a zoo model (Distiller's names, :mod:`prunecli.models.zoo`);
  a name that is not in the zoo but is a torchvision classification model (``resnet18``,
  ``alexnet``, ``vgg16`` ...) resolves to torchvision, as it did in Distiller;
* ``torchvision:NAME`` -- any torchvision classification model, always ``weights=None``;
* ``timm:NAME`` -- any model of the optional ``timm`` package (``pip install 'prunecli[timm]'``),
  always ``pretrained=False``;
* ``package.module:factory`` -- an importable callable returning an ``nn.Module``;
* ``path/to/file.py:Factory`` -- a callable defined in that file; only that file is executed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from torch import nn

from prunecli.data.info import dataset_info
from prunecli.errors import ModelError, SourceLocation
from prunecli.models.zoo import FAMILY_INPUT, ZOO

KINDS = ("zoo", "torchvision", "timm", "import", "file")
SPEC_FORMS = "a zoo name, torchvision:NAME, timm:NAME, package.module:factory or path/to/file.py:Factory"
TIMM_INSTALL = "pip install 'prunecli[timm]'"
_FILE_RE = re.compile(r"^(?P<path>.+\.py):(?P<attr>[A-Za-z_]\w*)$")
_IMPORT_RE = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_]\w*)$")
_PLAIN = (str, int, float, bool, type(None))


@dataclass
class ModelSpec:
    """How to rebuild a model: stored in checkpoints as plain data (see :meth:`to_dict`)."""

    kind: str  # one of KINDS
    name: str  # zoo or torchvision name; "package.module:factory"; the factory's name in a file
    kwargs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # the .py file, for kind == "file"
    dataset: str | None = None  # the data set it was created for, when known

    def to_dict(self) -> dict[str, Any]:
        for key, value in self.kwargs.items():
            if not _is_plain(value):
                raise ModelError(
                    f"model keyword argument {key}={value!r} is not plain data, so it cannot be saved",
                    hint="pass only numbers, strings, booleans, lists and dicts as model arguments",
                )
        return {
            "kind": self.kind,
            "name": self.name,
            "kwargs": dict(self.kwargs),
            "path": self.path,
            "dataset": self.dataset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if (
            not isinstance(data, dict)
            or data.get("kind") not in KINDS
            or not isinstance(data.get("name"), str)
        ):
            raise ModelError(
                f"not a model description: {data!r}",
                hint=f"expected a mapping with kind (one of {', '.join(KINDS)}), name and kwargs",
            )
        return cls(
            kind=data["kind"],
            name=data["name"],
            kwargs=dict(data.get("kwargs") or {}),
            path=data.get("path"),
            dataset=data.get("dataset"),
        )

    def to_string(self) -> str:
        """The spec string that parses back to this spec (keyword arguments as a query)."""
        base = {
            "zoo": self.name,
            "torchvision": f"torchvision:{self.name}",
            "timm": f"timm:{self.name}",
            "import": self.name,
            "file": f"{self.path}:{self.name}",
        }[self.kind]
        if self.kwargs:
            base += "?" + "&".join(f"{k}={_format_value(v)}" for k, v in self.kwargs.items())
        return base

    def factory(self) -> Callable[..., Any]:
        return _FACTORY_FINDERS[self.kind](self)

    def build(self) -> nn.Module:
        return _call_factory(self.factory(), self.kwargs, self.to_string())


# ---------------------------------------------------------------------------------------------
# parsing


def parse_spec(spec: str) -> ModelSpec:
    """Split a spec string into kind, name, path and keyword arguments (nothing is built)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError("empty model spec", hint=f"give {SPEC_FORMS}")
    text = spec.strip()
    body, _, query = text.partition("?")
    kwargs = _parse_query(query, text) if query else {}
    if body.startswith("torchvision:"):
        return ModelSpec("torchvision", body.split(":", 1)[1], kwargs)
    if body.startswith("timm:"):
        return ModelSpec("timm", body.split(":", 1)[1], kwargs)
    if m := _FILE_RE.match(body):
        return ModelSpec("file", m["attr"], kwargs, path=m["path"])
    if m := _IMPORT_RE.match(body):
        return ModelSpec("import", body, kwargs)
    if body.endswith(".py"):
        raise ModelError(
            f"model spec {spec!r} names a file but no factory in it",
            hint=f"add the function or class to call: {body}:Factory",
        )
    if ":" in body:
        raise ModelError(f"cannot read model spec {spec!r}", hint=f"give {SPEC_FORMS}")
    name = body.lower()
    if name in ZOO:
        return ModelSpec("zoo", name, kwargs)
    if name in torchvision_models():
        return ModelSpec("torchvision", name, kwargs)
    raise ModelError(f"unknown model {body!r}", hint=_suggest(name))


def _parse_query(query: str, spec: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in query.split("&"):
        key, eq, raw = item.partition("=")
        if not eq or not key.isidentifier():
            raise ModelError(
                f"bad keyword argument {item!r} in model spec {spec!r}",
                hint="write keyword arguments as NAME?key=value&key=value, e.g. resnet18?num_classes=10",
            )
        kwargs[key] = _load_scalar(raw)
    return kwargs


def _load_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw


def _format_value(value: Any) -> str:
    """A query value that :func:`_parse_query` reads back as the same value and type."""
    if isinstance(value, str) and not set(value) & set("&?=") and _load_scalar(value) == value:
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


@functools.cache
def torchvision_models() -> frozenset[str]:
    """Names of torchvision's image-classification models (not detection or video ones)."""
    import torchvision.models

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def available_models(*, include_torchvision: bool = True) -> list[str]:
    """Every plain name :func:`create_model` accepts (zoo first, then torchvision)."""
    names = sorted(ZOO)
    if include_torchvision:
        names += sorted(torchvision_models() - set(ZOO))
    return names


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, available_models(), n=4, cutoff=0.6)
    tail = f"; or give {SPEC_FORMS}"
    if close:
        return "did you mean " + ", ".join(close) + "?" + tail
    return "see docs/models.md for the model zoo" + tail


# ---------------------------------------------------------------------------------------------
# finding the factory


def _zoo_factory(spec: ModelSpec) -> Callable[..., Any]:
    entry = ZOO.get(spec.name)
    if entry is None:
        raise ModelError(f"unknown zoo model {spec.name!r}", hint=_suggest(spec.name))
    return entry.factory


def _torchvision_factory(spec: ModelSpec) -> Callable[..., Any]:
    if spec.name not in torchvision_models():
        raise ModelError(f"torchvision has no classification model {spec.name!r}", hint=_suggest(spec.name))
    if spec.kwargs.get("weights") is not None or spec.kwargs.get("pretrained"):
        raise ModelError(
            f"torchvision:{spec.name}: pretrained weights are never downloaded",
            hint="drop weights=/pretrained=; to start from trained weights load a checkpoint instead",
        )
    import torchvision.models

    builder = torchvision.models.get_model_builder(spec.name)

    def build(**kwargs: Any) -> nn.Module:
        kwargs.pop("weights", None)
        kwargs.pop("pretrained", None)
        return builder(weights=None, **kwargs)

    functools.update_wrapper(build, builder)
    return build


def _timm():
    """The timm package, or a ModelError that says how to install it."""
    try:
        import timm
    except ImportError:
        raise ModelError(
            "timm: models need the optional timm package, which is not installed",
            hint=f"install it with {TIMM_INSTALL}, or use a torchvision:NAME or zoo model",
        ) from None
    return timm


def _timm_factory(spec: ModelSpec) -> Callable[..., Any]:
    timm = _timm()
    if not timm.is_model(spec.name):
        close = difflib.get_close_matches(spec.name, timm.list_models(), n=4, cutoff=0.6)
        raise ModelError(
            f"timm has no model {spec.name!r}",
            hint=("did you mean " + ", ".join(f"timm:{c}" for c in close) + "?")
            if close
            else "list the names with python -c 'import timm; print(timm.list_models())'",
        )
    if spec.kwargs.get("pretrained") or spec.kwargs.get("pretrained_cfg_overlay"):
        raise ModelError(
            f"timm:{spec.name}: pretrained weights are never downloaded",
            hint="drop pretrained=; to start from trained weights load a checkpoint instead",
        )

    def build(**kwargs: Any) -> nn.Module:
        kwargs.pop("pretrained", None)
        return timm.create_model(spec.name, pretrained=False, **kwargs)

    build.__name__ = build.__qualname__ = spec.name
    return build


def timm_input_shape(name: str) -> tuple[int, int, int] | None:
    """The (C, H, W) a timm model was configured for, from its default pretrained config."""
    cfg = _timm().models.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    if not size or len(size) != 3:
        return None
    channels, height, width = (int(d) for d in size)
    return channels, height, width


def _import_factory(spec: ModelSpec) -> Callable[..., Any]:
    module_name, _, attr = spec.name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"cannot import module {module_name!r} for model {spec.name!r}: {exc}",
            hint="check the module is installed or on PYTHONPATH, or use path/to/file.py:Factory",
        ) from None
    except Exception as exc:
        raise ModelError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}",
            hint="fix the error in that module",
        ) from None
    return _get_attr(module, attr, module_name)


def _file_factory(spec: ModelSpec) -> Callable[..., Any]:
    path = spec.path or ""
    if not os.path.isfile(path):
        raise ModelError(
            f"model file {path} does not exist",
            hint="give an existing Python file as path/to/file.py:Factory",
        )
    module_name = f"prunecli_user_model_{abs(hash(os.path.abspath(path)))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelError(f"cannot load {path} as Python", hint="give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelError(
            f"running model file {path} failed: {type(exc).__name__}: {exc}",
            location=error_location(exc, path),
            hint="fix the error in that file (it is executed on its own, its folder is not on sys.path)",
        ) from None
    return _get_attr(module, spec.name, path)


def error_location(exc: BaseException, path: str | None = None) -> SourceLocation | None:
    """Where in the user's file an exception arose: a syntax error's position, else the deepest
    traceback frame in ``path`` (or in any file, when no path is given)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return SourceLocation(exc.filename, exc.lineno, exc.offset)
    wanted = os.path.abspath(path) if path else None
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if wanted is None or os.path.abspath(filename) == wanted:
            found = SourceLocation(path or filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _get_attr(module: Any, attr: str, where: str) -> Callable[..., Any]:
    factory = getattr(module, attr, None)
    if callable(factory):
        return factory
    candidates = sorted(
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and callable(v)
        and getattr(v, "__module__", None) == module.__name__
        and (inspect.isfunction(v) or (inspect.isclass(v) and issubclass(v, nn.Module)))
    )
    found = "not found" if factory is None else "is not callable"
    hint = (
        f"callables defined there: {', '.join(candidates)}"
        if candidates
        else "define a function or nn.Module class"
    )
    raise ModelError(f"{attr!r} {found} in {where}", hint=hint)


_FACTORY_FINDERS: dict[str, Callable[[ModelSpec], Callable[..., Any]]] = {
    "zoo": _zoo_factory,
    "torchvision": _torchvision_factory,
    "timm": _timm_factory,
    "import": _import_factory,
    "file": _file_factory,
}


# ---------------------------------------------------------------------------------------------
# building


def accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call_factory(factory: Callable[..., Any], kwargs: dict[str, Any], label: str) -> nn.Module:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            names = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            raise ModelError(
                f"model {label}: bad keyword arguments: {exc}",
                hint=f"it accepts: {', '.join(names) or 'no keyword arguments'}",
            ) from None
    try:
        model = factory(**kwargs)
    except ModelError:
        raise
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise ModelError(
                f"model {label}: its factory raised TypeError: {exc}",
                hint="check the model's keyword arguments",
            ) from None
        raise ModelError(
            f"model {label}: bad keyword arguments: {exc}",
            hint="remove or rename that argument; see the model's constructor for the names it accepts",
        ) from None
    except Exception as exc:
        source = (
            inspect.getsourcefile(factory)
            if inspect.isfunction(factory) or inspect.isclass(factory)
            else None
        )
        raise ModelError(
            f"model {label}: its factory raised {type(exc).__name__}: {exc}",
            location=error_location(exc, source) if source else None,
            hint="fix the factory, or the keyword arguments given to it",
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {label}: factory returned {type(model).__name__}, not a torch.nn.Module",
            hint="the factory must return the model instance",
        )
    return model


def create_model(
    spec: str | ModelSpec,
    *,
    dataset: str | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, ModelSpec]:
    """Build a model from a spec; ``num_classes`` defaults to the data set's class count.

    The returned :class:`ModelSpec` records every keyword argument actually used, so
    ``ModelSpec.from_dict(spec.to_dict()).build()`` rebuilds the same architecture.
    """
    parsed = (
        dataclasses.replace(spec, kwargs=dict(spec.kwargs))
        if isinstance(spec, ModelSpec)
        else parse_spec(spec)
    )
    parsed.kwargs.update(kwargs)
    if dataset is not None:
        parsed.dataset = dataset
    factory = parsed.factory()
    if num_classes is not None:
        if not accepts(factory, "num_classes"):
            raise ModelError(
                f"model {parsed.to_string()} takes no num_classes argument",
                hint="add a num_classes parameter to the factory (the data set decides the class count)",
            )
        parsed.kwargs["num_classes"] = int(num_classes)
    elif "num_classes" not in parsed.kwargs and parsed.dataset is not None:
        info = dataset_info(parsed.dataset)
        if info is not None and info.num_classes is not None and accepts(factory, "num_classes"):
            parsed.kwargs["num_classes"] = info.num_classes
    model = _call_factory(factory, parsed.kwargs, parsed.to_string())
    return model, parsed


def default_input_shape(spec_or_name: str | ModelSpec, dataset: str | None = None) -> tuple[int, ...]:
    """The (1, C, H, W) example input for tracing and MAC counting.

    The data set decides when it is known; otherwise the zoo family, torchvision's 224x224
    (299 for inception_v3), timm's default configuration of the model, or an ``input_shape``
    attribute (C, H, W) on a user factory.
    """
    spec = spec_or_name if isinstance(spec_or_name, ModelSpec) else parse_spec(spec_or_name)
    dataset = dataset or spec.dataset
    info = dataset_info(dataset) if dataset else None
    if info is not None and info.input_shape is not None:
        return (1, *info.input_shape)
    if spec.kind == "zoo":
        return (1, *FAMILY_INPUT[ZOO[spec.name].family])
    if spec.kind == "torchvision":
        side = 299 if spec.name == "inception_v3" else 224
        return (1, 3, side, side)
    if spec.kind == "timm":
        spec.factory()  # refuses unknown names before the config is looked up
        shape = timm_input_shape(spec.name)
        if shape is not None:
            return (1, *shape)
    declared = getattr(spec.factory(), "input_shape", None)
    if declared is not None:
        return (1, *tuple(int(d) for d in declared))
    raise ModelError(
        f"cannot tell the input shape of model {spec.to_string()}",
        hint="give the data set, or set an input_shape = (C, H, W) attribute on the factory",
    )
