"""The per-tensor rules of Distiller's classes on small score vectors, against keep vectors worked
out by hand from Distiller's counting (``floor(fraction * n)``, ``group_size``, ``round_to``, ties)."""

from __future__ import annotations

import torch

from prunecli.engine.allocation import BernoulliRule, LevelRule, RankRule, ScoreRankRule, SpliceRule


def _keep(rule, scores, amount, current=None):
    values = torch.tensor(scores)
    return rule.keep(lambda: values, amount, current, values.numel())


def test_rank_removes_floor_fraction_and_every_tie_with_the_cut() -> None:
    # n=5, 0.4 -> floor(2.0) = 2; the 2nd lowest is 0.1, and both 0.1s go
    assert _keep(RankRule(), [0.3, 0.1, 0.2, 0.1, 0.5], 0.4).tolist() == [1, 0, 1, 0, 1]
    # 0.5 -> floor(2.5) = 2: the two lowest, 0.1 and 0.2
    assert _keep(RankRule(), [0.3, 0.1, 0.2, 0.4, 0.5], 0.5).tolist() == [1, 0, 0, 1, 1]


def test_rank_group_size_rounds_the_count_down_and_never_removes_everything() -> None:
    # 0.7 of 5 -> floor(3.5) = 3 -> a multiple of 2: 2
    assert _keep(RankRule(group_size=2), [0.3, 0.1, 0.2, 0.4, 0.5], 0.7).tolist() == [1, 0, 0, 1, 1]
    # 0.99 of 4 would be all but the rule keeps one: 3 go
    assert _keep(RankRule(), [0.4, 0.1, 0.2, 0.3], 0.99).tolist() == [1, 0, 0, 0]


def test_rank_with_every_score_tied_removes_exactly_the_count() -> None:
    keep = _keep(RankRule(), [1.0, 1.0, 1.0, 1.0], 0.5)
    assert int((keep == 0).sum()) == 2


def test_rank_round_to_keeps_a_multiple_and_removes_exactly_the_lowest() -> None:
    scores = [float(v) for v in (5, 1, 9, 3, 12, 7, 2, 11, 4, 8, 6, 10)]
    # 12 at 0.5: 6 kept requested -> 8; the four lowest (1, 2, 3, 4 at 1, 6, 3, 8) go
    keep = _keep(RankRule(round_to=4), scores, 0.5)
    assert [i for i, k in enumerate(keep.tolist()) if k == 0] == [1, 3, 6, 8]


def test_blocks_count_int_fraction_and_nothing_to_prune_leaves_the_mask() -> None:
    assert _keep(RankRule(count="int"), [0.3, 0.1, 0.2, 0.4, 0.5], 0.5).tolist() == [1, 0, 0, 1, 1]
    asked = []
    rule = RankRule()
    assert rule.keep(lambda: asked.append(1), 0.1, None, 5) is None  # floor(0.5) = 0
    assert asked == []  # the scores (random draws, statistics) are not taken


def test_score_rank_keeps_the_highest_with_ties_kept_by_position() -> None:
    # 0.5 of 4 -> 2 go; keep 0.9 and the first of the tied 0.2s
    assert _keep(ScoreRankRule(), [0.2, 0.2, 0.2, 0.9], 0.5).tolist() == [1, 0, 0, 1]
    assert _keep(ScoreRankRule(), [0.5, 0.1, 0.1, 0.9], 0.5).tolist() == [1, 0, 0, 1]
    # no statistics yet: the mask is left alone
    assert ScoreRankRule().keep(lambda: None, 0.5, None, 4) is None


def test_bernoulli_scales_the_kept_groups_to_keep_the_expected_sum() -> None:
    torch.manual_seed(0)
    rule = BernoulliRule()
    drawn = rule.keep(lambda: None, 0.5, None, 8)
    assert set(drawn.unique().tolist()) == {0.0, 1.0}  # what a Leader group stores and shares
    keep = rule.mask_values(drawn)
    kept = int((keep > 0).sum())
    assert 0 < kept < 8
    assert set(keep.unique().tolist()) == {0.0, torch.tensor(8 / kept).item()}
    assert torch.isclose(keep.sum(), torch.tensor(8.0))


def test_level_and_splice_rules() -> None:
    # level: int(0.4 * 5) = 2, every score at or below the 2nd smallest (0.1, 0.1) goes
    assert _keep(LevelRule(), [0.3, 0.1, 0.2, 0.1, 0.5], 0.4).tolist() == [1, 0, 1, 0, 1]
    # splice (low 0.2, high 0.4): below low goes, at or above high comes back, between keeps its state
    current = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert _keep(SpliceRule(), [0.1, 0.3, 0.3, 0.5], (0.2, 0.4), current).tolist() == [0, 1, 0, 1]
