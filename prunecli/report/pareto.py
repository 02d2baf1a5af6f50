"""The Pareto front of (cost, score) points: the results no other result beats on both counts."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the points not dominated by another (lower or equal cost and higher or equal
    score, strictly better on one), sorted by cost; points missing either value are left out."""
    known = [(i, float(c), float(s)) for i, (c, s) in enumerate(points) if c is not None and s is not None]
    front = []
    for i, cost, score in known:
        dominated = any(c <= cost and s >= score and (c < cost or s > score) for j, c, s in known if j != i)
        if not dominated:
            front.append((cost, i))
    return [i for _, i in sorted(front)]
