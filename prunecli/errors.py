"""Error types shared by every layer.

Every error a user can cause is a :class:`PruneCliError`: it carries where the problem is
(file, line, column), what was expected and how to fix it, so the CLI can print one clear
paragraph and exit with a meaningful code instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceLocation:
    """A position in a user's file (1-based line and column, as editors show them)."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass
class Problem:
    """One finding inside a file; several may be reported together."""

    message: str
    location: SourceLocation | None = None
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class PruneCliError(Exception):
    """Bad input or an unmet precondition: the user can fix it. Exit code 2 by default."""

    exit_code = 2
    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        location: SourceLocation | None = None,
        hint: str | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        self.message = message
        self.location = location
        self.hint = hint
        self.problems: list[Problem] = list(problems or [])
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.location}: {self.message}" if self.location else self.message
        lines = [head]
        lines.extend(f"  - {p.render()}" for p in self.problems)
        if self.hint:
            lines.append(f"Fix: {self.hint}")
        return "\n".join(lines)


class ScheduleError(PruneCliError):
    kind = "schedule error"


class ConfigError(PruneCliError):
    kind = "config error"


class ModelError(PruneCliError):
    kind = "model error"


class DataError(PruneCliError):
    kind = "data error"


class CheckpointError(PruneCliError):
    kind = "checkpoint error"


class ThinningError(PruneCliError):
    kind = "thinning error"


class GraphError(PruneCliError):
    kind = "dependency-graph error"


class ExportError(PruneCliError):
    kind = "export error"


class GateFailed(PruneCliError):
    """A CI gate (``--fail-if``) was not met: exit 1, distinct from bad input (2)."""

    exit_code = 1
    kind = "gate failed"


class TrainingDiverged(PruneCliError):
    """Loss or weights became non-finite; the last good checkpoint is kept."""

    exit_code = 3
    kind = "training diverged"


class Interrupted(PruneCliError):
    """The user pressed Ctrl-C; a resumable checkpoint was written."""

    exit_code = 130
    kind = "interrupted"


@dataclass
class ProblemCollector:
    """Gathers several problems so a file's mistakes are all reported at once."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, message: str, location: SourceLocation | None = None, hint: str | None = None) -> None:
        problem = Problem(message, location, hint)
        if problem not in self.problems:  # two checks may reach the same finding
            self.problems.append(problem)

    def raise_if_any(self, error_type: type[PruneCliError], summary: str) -> None:
        if self.problems:
            raise error_type(f"{summary}: {len(self.problems)} problem(s)", problems=self.problems)
