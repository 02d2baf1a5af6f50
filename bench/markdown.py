"""Renders the sections of a run as one Markdown document."""

from __future__ import annotations

from bench.results import Section, Table


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    lines = [f"**{t.caption}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def section(s: Section, number: int) -> str:
    parts = [f"## {number}. {s.title}", s.method]
    parts += [table(t) for t in s.tables]
    if s.targets:
        rows = ["| goal | measured | verdict | note |", "|---|---|---|---|"]
        rows += [
            f"| {_escape(t.goal)} | {_escape(t.measured)} | **{t.verdict}** | {_escape(t.note)} |"
            for t in s.targets
        ]
        parts.append("**Targets**\n\n" + "\n".join(rows))
    if s.notes:
        parts.append("\n".join(f"- {_escape(n)}" for n in s.notes))
    return "\n\n".join(parts)


SETUP = """Peers: Torch-Pruning comes with the `bench` extra (`pip install -e ".[bench]"`); without it its rows say
"not installed". `torch.nn.utils.prune` and `torch.ao.pruning` ship with torch. NNI runs in its own virtual
environment, so its pins cannot disturb ours; the benchmark finds its interpreter through `BENCH_NNI_PYTHON`
(default: `../nni-venv/bin/python` next to the checkout). It was made with
`python3 -m venv ../nni-venv`, a `.pth` file listing this checkout's `.venv` site-packages (so NNI reuses the
same torch instead of downloading another), and `../nni-venv/bin/pip install nni==3.0 tensorboard`
(tensorboard is an undeclared NNI dependency of its dependency-group detection). `--quick` skips NNI."""


def document(sections: list[Section], machine: dict[str, str], command: str, settings: str) -> str:
    head = [
        "# Benchmarks",
        "",
        "prunecli measured side by side with the tools users would otherwise pick, on the same work, "
        "in the same run. Variants alternate in rounds (the order rotating each round) and every "
        "comparison is the median of per-round ratios; absolute times are shown only next to them. "
        "Regenerate this file with the command below.",
        "",
        f"Command: `{command}`",
        "",
        SETUP,
        "",
        f"Settings: {settings}",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {_escape(v)} |" for k, v in machine.items()],
    ]
    summary = ["## Summary", "", "| benchmark | goal | measured | verdict |", "|---|---|---|---|"]
    for s in sections:
        summary += [
            f"| {s.title} | {_escape(t.goal)} | {_escape(t.measured)} | **{t.verdict}** |" for t in s.targets
        ]
    body = [section(s, i) for i, s in enumerate(sections, 1)]
    return "\n".join(head) + "\n\n" + "\n".join(summary) + "\n\n" + "\n\n".join(body) + "\n"
