"""Safe YAML loading that remembers where every key and value came from.

Schedules and run configs are hand-written; an error is only useful if it points at the
line to fix. PyYAML's plain loaders forget positions and silently keep the last of two
duplicate keys, so this module composes the node tree with a ``SafeLoader`` subclass and
builds plain Python data from it, recording a :class:`SourceLocation` per path.

Duplicate keys are a policy of the caller (:data:`DUPLICATE_POLICIES`): a run configuration
refuses them, while a schedule keeps the last value as Distiller's loader did (its example files
contain such a key) and records a warning naming both lines, which ``--strict`` turns into an error.

A *path* is a tuple of mapping keys and sequence indices from the document root, e.g.
``("policies", 2, "pruner", "instance_name")``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

import yaml

from prunecli.errors import Problem, PruneCliError, SourceLocation

Path = tuple[Any, ...]

#: Tags whose nodes we build ourselves (everything else must be a safe scalar tag).
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Application tags a schedule may put on a mapping: Intel LPOT and Neural Compressor write each
#: pruner entry as ``- !Pruner {...}``. Such a mapping is read as plain data (a :class:`TaggedMap`);
#: nothing is ever constructed from a tag, and any other tag is refused.
SCHEDULE_MAPPING_TAGS = ("!Pruner",)
#: Guard against alias bombs ("billion laughs"): more built nodes than this is refused.
MAX_NODES = 2_000_000
#: What to do with a key that appears twice in one mapping: refuse the file, or keep the last
#: value (PyYAML's and so Distiller's behaviour) and record a warning on the :class:`Locator`.
DUPLICATE_POLICIES = ("error", "last-wins")


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader with no extra constructors: only YAML's standard scalar types, lists and maps.

    ``!!python/...`` and application tags are refused by ``SafeLoader`` already; this subclass
    exists so callers share one loader type and nobody registers constructors on the global one.
    """


class TaggedMap(dict):
    """A mapping that carried an accepted application tag (e.g. ``!Pruner``); plain data otherwise."""

    tag: str = ""


class Locator:
    """Maps a path to the position of its value (or its key) in the source text."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self._values: dict[Path, SourceLocation] = {}
        self._keys: dict[Path, SourceLocation] = {}
        #: things accepted but worth telling the user (duplicate keys under "last-wins")
        self.warnings: list[Problem] = []

    def __call__(self, path: Path = (), *, key: bool = False) -> SourceLocation:
        """Position of ``path``; with ``key=True`` the position of the mapping key itself.

        Unknown paths (e.g. a key the user forgot) fall back to the nearest existing parent,
        so an error about a *missing* key points at the mapping that should contain it.
        """
        path = tuple(path)
        table = self._keys if key else self._values
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self._values:
                return self._values[path]
        return self._values.get((), SourceLocation(self.source, 1, 1))

    def has(self, path: Path) -> bool:
        return tuple(path) in self._values

    def paths(self) -> list[Path]:
        return list(self._values)

    def _mark(self, path: Path, mark: yaml.Mark, *, key: bool = False) -> None:
        loc = SourceLocation(self.source, mark.line + 1, mark.column + 1)
        (self._keys if key else self._values)[path] = loc


def _location(source: str | None, mark: yaml.Mark | None) -> SourceLocation:
    if mark is None:
        return SourceLocation(source)
    return SourceLocation(source, mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a composed node tree into plain dicts/lists/scalars, recording positions."""

    def __init__(
        self,
        loader: StrictSafeLoader,
        locator: Locator,
        source: str | None,
        duplicates: str = "error",
        mapping_tags: tuple[str, ...] = (),
    ) -> None:
        self.duplicates = duplicates
        self.mapping_tags = tuple(mapping_tags)
        self.loader = loader
        self.locator = locator
        self.source = source
        self.problems: list[Problem] = []
        self.count = 0
        self._active: set[int] = set()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise PruneCliError(
                f"document expands to more than {MAX_NODES} values (alias bomb?)",
                location=_location(self.source, node.start_mark),
                hint="remove the deeply nested aliases (*name) from the file",
            )
        self.locator._mark(path, node.start_mark)
        if id(node) in self._active:
            self.problems.append(
                Problem(
                    "recursive alias: a node contains itself",
                    _location(self.source, node.start_mark),
                    "replace the alias with a copy of the content",
                )
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        if node.tag not in self.loader.yaml_constructors:
            self.problems.append(
                Problem(
                    f"unsupported YAML tag {node.tag!r}",
                    _location(self.source, node.start_mark),
                    "remove the tag: only plain YAML strings, numbers, booleans and null are accepted"
                    + self._tags_hint("mappings"),
                )
            )
            return None
        return self.loader.construct_object(node, deep=True)

    def _tags_hint(self, where: str) -> str:
        if not self.mapping_tags:
            return ""
        return f" ({', '.join(self.mapping_tags)} is accepted on {where} only)"

    def _check_tag(self, node: yaml.Node, expected: str, what: str) -> bool:
        if node.tag == expected or (expected == _MAP_TAG and node.tag in self.mapping_tags):
            return True
        self.problems.append(
            Problem(
                f"unsupported YAML tag {node.tag!r} on a {what}",
                _location(self.source, node.start_mark),
                "remove the tag: only plain YAML mappings, lists and scalars are accepted"
                + self._tags_hint("pruner entries (mappings)"),
            )
        )
        return False

    def _duplicate(self, key: Any, first: yaml.Node, second: yaml.Node) -> bool:
        """Report a key given twice; True when the later value should replace the earlier one."""
        line1, line2 = first.start_mark.line + 1, second.start_mark.line + 1
        where = _location(self.source, second.start_mark)
        if self.duplicates == "error":
            self.problems.append(
                Problem(
                    f"duplicate key {key!r} (first defined on line {line1})",
                    where,
                    "YAML keeps only one of them: merge the two entries or rename one",
                )
            )
            return False
        self.locator.warnings.append(
            Problem(
                f"duplicate key {key!r} on lines {line1} and {line2}: the value on line {line2} is used "
                f"and the one on line {line1} is ignored",
                where,
                f"delete line {line1} or line {line2}; --strict refuses duplicate keys",
            )
        )
        return True

    def _sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        if not self._check_tag(node, _SEQ_TAG, "list"):
            return []
        self._active.add(id(node))
        try:
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        if not self._check_tag(node, _MAP_TAG, "mapping"):
            return {}
        self._active.add(id(node))
        try:
            explicit = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
            if len(explicit) < len(node.value):
                # SafeLoader's merge handling ("<<: *base"); it rewrites node.value in place, and
                # an explicit key overriding a merged one is what merging is for, not a duplicate.
                self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            if node.tag != _MAP_TAG:
                result = TaggedMap()
                result.tag = node.tag
            first_seen: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(
                        Problem(
                            "a mapping key must be a plain scalar, not a list or mapping",
                            _location(self.source, key_node.start_mark),
                            "use a simple name as the key",
                        )
                    )
                    continue
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    continue
                earlier = first_seen.get(key)
                if earlier is not None and id(earlier) in explicit and id(key_node) in explicit:
                    if not self._duplicate(key, earlier, key_node):
                        continue
                    del result[key]  # last value wins, and takes the later position in the mapping
                first_seen[key] = key_node
                child_path = (*path, key)
                self.locator._mark(child_path, key_node.start_mark, key=True)
                result[key] = self.build(value_node, child_path)
            return result
        finally:
            self._active.discard(id(node))


def _read_source(
    path_or_text: str | os.PathLike[str], source_name: str | None, error_type: type[PruneCliError]
) -> tuple[str, str | None]:
    """Decide whether the argument is a file path or YAML text, and read it."""
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str)
        and source_name is None
        and "\n" not in path_or_text
        and (os.path.exists(path_or_text) or path_or_text.endswith((".yaml", ".yml")))
    ):
        file_name = os.fspath(path_or_text)
        try:
            with open(file_name, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise error_type(
                f"file not found: {file_name}",
                hint="check the path (relative paths start at the current directory)",
            ) from None
        except IsADirectoryError:
            raise error_type(
                f"{file_name} is a directory, not a YAML file", hint="pass the file itself"
            ) from None
        except OSError as exc:
            raise error_type(
                f"cannot read {file_name}: {exc.strerror}", hint="check the file permissions"
            ) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise error_type(
                f"{file_name} is not UTF-8 text (byte {exc.start} cannot be decoded)",
                location=SourceLocation(file_name),
                hint="save the file as UTF-8",
            ) from None
        return text, source_name or file_name
    return str(path_or_text), source_name


def load_yaml(
    path_or_text: str | os.PathLike[str],
    *,
    source_name: str | None = None,
    error_type: type[PruneCliError] = PruneCliError,
    require_mapping: bool = True,
    what: str = "YAML file",
    duplicates: str = "error",
    mapping_tags: tuple[str, ...] = (),
) -> tuple[Any, Locator]:
    """Load one YAML document safely; return ``(data, locate)``.

    ``path_or_text`` is a path (``os.PathLike``, or a one-line string naming an existing file or
    ending in ``.yaml``/``.yml``) or the YAML text itself; with ``source_name`` given a string is
    always treated as text and ``source_name`` is what messages call it. Raises ``error_type``
    with file:line:column on syntax errors, duplicate keys (both lines named; with
    ``duplicates="last-wins"`` they become ``locate.warnings`` instead), unsupported tags,
    an empty document, several documents, or (with ``require_mapping``) a non-mapping top level.
    ``mapping_tags`` lists application tags accepted on mappings (read as :class:`TaggedMap`).
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, not {duplicates!r}")
    text, source = _read_source(path_or_text, source_name, error_type)
    name = source or "<input>"
    if "\x00" in text:
        raise error_type(
            f"the file contains NUL bytes: it is not a text {what}",
            location=SourceLocation(source, 1, 1),
            hint="pass the YAML file, not a binary file",
        )
    locator = Locator(source)
    loader: StrictSafeLoader | None = None
    try:
        loader = StrictSafeLoader(text)  # the reader refuses control characters right here
        try:
            node = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if "single document" in f"{exc.context} {exc.problem}":
                raise error_type(
                    "the file holds several YAML documents ('---' separators); expected one",
                    location=_location(source, exc.problem_mark),
                    hint="keep one document per file",
                ) from None
            raise
        if node is None:
            raise error_type(
                "the file is empty",
                location=SourceLocation(source, 1, 1),
                hint=f"write the {what} content, or pass another file",
            )
        builder = _Builder(loader, locator, source, duplicates, mapping_tags)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise error_type(
            f"YAML syntax error: {detail or 'invalid YAML'}",
            location=_location(source, mark),
            hint="check indentation, colons and quotes around this position",
        ) from None
    except yaml.reader.ReaderError as exc:  # control characters, raised before any mark exists
        pos = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise error_type(
            f"character {chr(exc.character) if isinstance(exc.character, int) else exc.character!r} "
            "is not allowed in YAML text",
            location=SourceLocation(source, line, column),
            hint="remove the control character (or save the file as UTF-8 text)",
        ) from None
    except yaml.YAMLError as exc:  # any other unmarked error
        raise error_type(
            f"YAML error: {exc}", location=SourceLocation(source), hint="check the file is valid YAML text"
        ) from None
    except RecursionError:
        raise error_type(
            "the file is nested too deeply to read",
            location=SourceLocation(source, 1, 1),
            hint="flatten the structure",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.problems:
        raise error_type(
            f"{name}: {len(builder.problems)} problem(s) reading YAML", problems=builder.problems
        )
    if require_mapping and not isinstance(data, dict):
        raise error_type(
            f"expected a mapping of 'key: value' lines at the top level, got {kind_of(data)}",
            location=locator(()),
            hint=f"a {what} starts with top-level keys such as 'name: ...'",
        )
    return data, locator


def kind_of(value: Any) -> str:
    """How a message names the type of a parsed YAML value ("a list", "a number", ...)."""
    names: dict[type, str] = {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }
    return names.get(type(value), "null" if value is None else type(value).__name__)


LocateFn = Callable[..., SourceLocation]
