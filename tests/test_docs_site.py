"""The documentation site's navigation lists every page, and the API reference every public name.

The site itself is built in strict mode by .ci/run (`mkdocs build --strict`), which fails on a
broken link, a page left out of the nav or an API name mkdocstrings cannot resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import prunecli

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _nav_pages(node: object) -> list[str]:
    """Every page path in an MkDocs ``nav`` tree (lists of ``{title: path-or-subtree}``)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def _config() -> dict:
    return yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = _nav_pages(_config()["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = sorted(set(pages) - set(nav))
    assert not missing, f"docs pages missing from nav: in mkdocs.yml: {missing} (add one line each)"
    dangling = sorted(set(nav) - set(pages))
    assert not dangling, f"mkdocs.yml's nav names pages that do not exist: {dangling}"
    assert len(nav) == len(set(nav)), "a page is listed twice in mkdocs.yml's nav"


def test_api_reference_documents_every_exported_name() -> None:
    text = (DOCS / "api-reference.md").read_text(encoding="utf-8")
    targets = re.findall(r"^::: ([\w.]+)$", text, re.MULTILINE)
    assert targets and all(t.startswith("prunecli.api.") for t in targets), targets
    documented = {target.rsplit(".", 1)[-1] for target in targets}
    exported = {name for name in prunecli.__all__ if not name.startswith("_")}
    missing = sorted(exported - documented)
    assert not missing, f"docs/api-reference.md lacks a `::: prunecli.api.NAME` entry for {missing}"
    gone = sorted(documented - exported)
    assert not gone, f"docs/api-reference.md documents names prunecli no longer exports: {gone}"
