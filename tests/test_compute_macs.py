"""MAC counting against Distiller's formula computed by hand on a tiny network."""

import torch
from torch import nn

from prunecli.report.compute import compute_summary, total_macs


def test_conv_and_linear_macs_follow_distiller_formula():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # OFM 8x6x6, kernel 3x3, C_in 3
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),  # OFM 8x3x3, C_in/groups 2
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    )
    rows = compute_summary(model, torch.randn(2, 3, 6, 6))
    expected = [8 * 6 * 6 * 3 * 9, 8 * 3 * 3 * 2 * 9, 72 * 5]
    assert [r.macs for r in rows] == expected
    assert total_macs(model, torch.randn(1, 3, 6, 6)) == sum(expected)
    assert rows[0].ofm == (1, 8, 6, 6)  # counted per sample


def test_effective_macs_scale_with_weight_density():
    conv = nn.Conv2d(2, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight[:2] = 0  # half the filters zero
    (row,) = compute_summary(conv, torch.randn(1, 2, 5, 5))
    assert row.macs == 4 * 25 * 2
    assert row.effective_macs == row.macs // 2
