"""Turning JSON Schema failures and semantic rules into located, fixable problems."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from jsonschema import Draft202012Validator

from prunecli.errors import ProblemCollector, SourceLocation

Locate = Callable[..., SourceLocation]
Path = tuple[Any, ...]


def suggest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    if not matches:
        # a choice contained in the word or the other way round ("agp_pruner" -> "agp")
        contained = [str(c) for c in choices if str(c) and (str(c) in str(word) or str(word) in str(c))]
        matches = sorted(contained, key=len, reverse=True)[:1]
    if not matches:
        # case-insensitive second chance ("automatedgradualpruner")
        lowered = {str(c).lower(): str(c) for c in choices}
        hit = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=cutoff)
        matches = [lowered[hit[0]]] if hit else []
    return f" (did you mean {matches[0]}?)" if matches else ""


def show_path(path: Iterable[Any]) -> str:
    parts = list(path)
    if not parts:
        return "value"
    text = str(parts[0])
    for p in parts[1:]:
        text += f"[{p}]" if isinstance(p, int) else f"[{p!r}]"
    return text


def _expected_along(schema: dict[str, Any], schema_path: list[Any]) -> str | None:
    node: Any = schema
    expected = schema.get("x-expected")
    for step in schema_path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and "x-expected" in node:
            expected = node["x-expected"]
    return expected


def _number_hint(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return None
        return f"YAML read {value!r} as text: write it with a decimal point, e.g. {float(value)!r}"
    return None


def schema_problems(
    schema: dict[str, Any],
    args: dict[str, Any],
    *,
    owner: str,
    base: Path,
    locate: Locate,
    problems: ProblemCollector,
) -> bool:
    """Validate ``args`` against ``schema``; add one problem per bad path. True when valid."""
    seen: set[Path] = set()
    ok = True
    errors = sorted(
        Draft202012Validator(schema).iter_errors(args), key=lambda e: [str(p) for p in e.absolute_path]
    )
    props = schema.get("properties", {})
    for err in errors:
        ok = False
        rel = tuple(err.absolute_path)
        if err.validator == "required":
            for name in err.validator_value:
                if isinstance(err.instance, dict) and name not in err.instance:
                    expected = err.schema.get("properties", {}).get(name, {}).get("x-expected", "a value")
                    where = show_path((*rel, name))
                    problems.add(
                        f"{owner}: missing argument '{where}'",
                        locate((*base, *rel), key=not rel),
                        f"add '{name}:' with {expected}",
                    )
            continue
        if err.validator == "additionalProperties" and err.validator_value is False:
            allowed = list(err.schema.get("properties", {}))
            for name in err.instance:
                if name in allowed:
                    continue
                where = show_path((*rel, name))
                problems.add(
                    f"{owner}: unknown argument '{where}'{suggest(name, allowed)}",
                    locate((*base, *rel, name), key=True),
                    "accepted: " + (", ".join(allowed) if allowed else "no arguments"),
                )
            continue
        if rel in seen:
            continue
        seen.add(rel)
        expected = _expected_along(schema, list(err.absolute_schema_path)) or err.message
        if err.validator in ("minProperties", "minItems") and not err.instance:
            message = f"{owner}: '{show_path(rel)}' is empty; expected {expected}"
        else:
            message = f"{owner}: '{show_path(rel)}' must be {expected}, got {err.instance!r}"
        problems.add(message, locate((*base, *rel)), _number_hint(err.instance) or _fix_for(rel, props))
    return ok


def _fix_for(rel: Path, props: dict[str, Any]) -> str:
    if rel and rel[0] in props:
        return f"correct the value of '{rel[0]}'"
    return "correct the value"
