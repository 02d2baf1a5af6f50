"""Safe YAML loading with positions: the base every user-facing error message relies on."""

from __future__ import annotations

import pytest

from prunecli.errors import ConfigError, PruneCliError
from prunecli.schedule.yamlio import load_yaml

TEXT = """\
version: 1
pruners:
  p1:
    class: AutomatedGradualPruner
    weights: [a.weight, b.weight]
"""


def test_locations_of_keys_and_values() -> None:
    data, locate = load_yaml(TEXT, source_name="s.yaml")
    assert data["pruners"]["p1"]["weights"] == ["a.weight", "b.weight"]
    loc = locate(("pruners", "p1", "weights", 1))
    assert (loc.file, loc.line, loc.column) == ("s.yaml", 5, 25)
    key = locate(("pruners", "p1", "class"), key=True)
    assert (key.line, key.column) == (4, 5)
    # a missing key points at its nearest existing parent
    assert locate(("pruners", "p1", "nope")).line == 4


def test_reads_files(tmp_path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(TEXT)
    data, locate = load_yaml(f)
    assert data["version"] == 1
    assert locate(("version",)).file == str(f)
    data2, _ = load_yaml(str(f))
    assert data2 == data


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first defined on line 1)"),
        ("a: [1, 2\n", 2, "YAML syntax error"),
        ("", 1, "is empty"),
        ("# only a comment\n", 1, "is empty"),
        ("- 1\n- 2\n", 1, "expected a mapping"),
        ("a: 1\n---\nb: 2\n", 2, "several YAML documents"),
        ("a: !!python/object/apply:os.system [ls]\n", 1, "unsupported YAML tag"),
        ("a: !custom x\n", 1, "unsupported YAML tag"),
        ("a: &x [*x]\n", 1, "recursive alias"),
        ("a: 1\nb: \x1f\n", 2, "is not allowed in YAML text"),
    ],
)
def test_refusals_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PruneCliError) as info:
        load_yaml(text, source_name="bad.yaml")
    err = info.value
    rendered = err.render()
    assert fragment in rendered
    assert f"bad.yaml:{line}" in rendered


def test_error_type_is_configurable_and_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml", error_type=ConfigError)
    with pytest.raises(ConfigError, match="duplicate"):
        load_yaml("x: 1\nx: 1\n", source_name="c.yaml", error_type=ConfigError)


def test_non_mapping_allowed_when_asked() -> None:
    data, locate = load_yaml("- 1\n- 2\n", source_name="l.yaml", require_mapping=False)
    assert data == [1, 2]
    assert locate((1,)).line == 2


def test_merge_keys_are_resolved() -> None:
    data, _ = load_yaml("base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n", source_name="m.yaml")
    assert data["d"] == {"x": 1, "y": 2}


def test_duplicate_keys_last_wins_with_a_warning_naming_both_lines() -> None:
    text = "a: 1\nb:\n  c: 2\n  c: 3\na: 4\n"
    data, locate = load_yaml(text, source_name="d.yaml", duplicates="last-wins")
    assert data == {"b": {"c": 3}, "a": 4}  # PyYAML's own reading of the same text
    import yaml

    assert yaml.safe_load(text) == data
    assert [(w.location.line, w.message) for w in locate.warnings] == [
        (
            4,
            "duplicate key 'c' on lines 3 and 4: the value on line 4 is used and the one on line 3 is ignored",
        ),
        (
            5,
            "duplicate key 'a' on lines 1 and 5: the value on line 5 is used and the one on line 1 is ignored",
        ),
    ]
    assert locate(("a",)).line == 5  # positions follow the value that is used
    with pytest.raises(PruneCliError, match="duplicate key 'c'"):
        load_yaml(text, source_name="d.yaml")  # the default refuses


def test_merge_key_override_is_not_a_duplicate() -> None:
    data, locate = load_yaml("base: &b {x: 1, y: 1}\nd:\n  <<: *b\n  y: 2\n", source_name="m.yaml")
    assert data["d"] == {"x": 1, "y": 2} and not locate.warnings
