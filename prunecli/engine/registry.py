"""Named plug-in tables (targets, metrics, ...) that user code can extend.

Every axis of the engine keeps one :class:`Registry`. A schedule names an entry by its
registered name, or names user code directly as ``package.module:function``; the function is
imported then (never at YAML parse time) and must return the plug-in.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown name, or a ``module:function`` that cannot be imported."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


def is_user_code(name: str) -> bool:
    """``package.module:function`` names user code; registered names never hold a colon-and-dot pair."""
    module, sep, attr = name.partition(":")
    return bool(
        sep and module and attr and attr.isidentifier() and all(p.isidentifier() for p in module.split("."))
    )


def load_user_code(name: str) -> Callable:
    """Import ``package.module:function`` (the module must be importable: installed or on PYTHONPATH)."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"cannot import {module_name!r} for {name!r}: {exc}",
            "make the module importable (install it, or add its folder to PYTHONPATH)",
        ) from None
    value = getattr(module, attr, None)
    if not callable(value):
        raise RegistryError(f"{module_name} has no callable {attr!r}", f"define {attr} in {module_name}")
    return value


class Registry(Generic[T]):
    """Name -> factory, with did-you-mean errors and ``module:function`` names for user code."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._table: dict[str, T] = {}

    def register(self, name: str, value: T | None = None) -> Callable[[T], T] | T:
        """``REG.register("name", obj)`` or ``@REG.register("name")`` on a class or function."""
        if value is not None:
            self._table[name] = value
            return value

        def decorate(obj: T) -> T:
            self._table[name] = obj
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        self._table.pop(name, None)

    def get(self, name: str) -> T:
        if name in self._table:
            return self._table[name]
        if is_user_code(name):
            return load_user_code(name)  # type: ignore[return-value]
        close = difflib.get_close_matches(name, list(self._table), n=1)
        maybe = f" (did you mean {close[0]!r}?)" if close else ""
        raise RegistryError(
            f"unknown {self.what} {name!r}{maybe}",
            f"use one of: {', '.join(sorted(self._table))}, or 'package.module:function' for your own",
        )

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._table))

    def names(self) -> list[str]:
        return sorted(self._table)
