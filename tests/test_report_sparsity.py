"""The Distiller sparsity table, checked column by column on tensors with known zero patterns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from prunecli.report.sparsity import COLUMNS, TOTAL_NAME, sparsity_row, sparsity_table


def _conv_weight() -> torch.Tensor:
    """8 filters x 4 channels x 3x3 with zeroed filters, channels and single kernels."""
    torch.manual_seed(0)
    w = torch.rand(8, 4, 3, 3) + 0.1  # strictly non-zero to start with
    w[2] = 0  # filter 2
    w[5] = 0  # filter 5
    w[:, 1] = 0  # channel 1 in every filter
    w[0, 3] = 0  # one extra kernel
    w[7, 0, 1, 1] = 0  # one extra element (not a whole kernel)
    return w


def test_conv_columns_by_hand():
    w = _conv_weight()
    row = sparsity_row("conv.weight", w)
    # Independent oracles, counted with plain loops.
    zero_filters = sum(1 for f in range(8) if all(w[f, c].abs().sum() == 0 for c in range(4)))
    zero_channels = sum(1 for c in range(4) if all(w[f, c].abs().sum() == 0 for f in range(8)))
    zero_kernels = sum(1 for f in range(8) for c in range(4) if w[f, c].abs().sum() == 0)
    zeros = sum(1 for v in w.flatten().tolist() if v == 0)
    assert zero_filters == 2 and zero_channels == 1
    assert zero_kernels == 2 * 4 + 6 * 1 + 1  # 2 whole filters, channel 1 elsewhere, kernel (0,3)
    assert row.shape == [8, 4, 3, 3]
    assert row.nnz_dense == 288
    assert row.nnz_sparse == 288 - zeros
    assert row.pct_3d == pytest.approx(100 * zero_filters / 8)
    assert row.ch_pct == pytest.approx(100 * zero_channels / 4)
    assert row.pct_2d == pytest.approx(100 * zero_kernels / 32)
    assert row.fine_pct == pytest.approx(100 * zeros / 288)
    assert row.cols_pct == 0 and row.rows_pct == 0  # matrix columns only apply to 2D weights
    assert row.std == pytest.approx(float(w.std()))
    assert row.mean == pytest.approx(float(w.mean()))
    assert row.abs_mean == pytest.approx(float(w.abs().mean()))


def test_linear_rows_are_input_features_as_in_distiller():
    """Distiller names Linear structures on the transposed matrix: 'Rows' = zero input features."""
    w = torch.ones(6, 10)  # [out=6, in=10]
    w[:, [0, 3, 4]] = 0  # 3 input features removed (stored columns)
    w[5, :] = 0  # 1 output neuron removed (stored row)
    row = sparsity_row("fc.weight", w)
    assert row.rows_pct == pytest.approx(100 * 3 / 10)
    assert row.cols_pct == pytest.approx(100 * 1 / 6)
    assert row.pct_2d == pytest.approx(100 * 1 / 6)  # 2D of a matrix = zero stored rows
    assert row.ch_pct == 0 and row.pct_3d == 0
    assert row.nnz_sparse == 5 * 7


def test_table_selection_and_total():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[0] = 0
        model[3].weight[:, 0] = 0
    table = sparsity_table(model)
    # BN weights and all biases are 1-D: Distiller leaves them out.
    assert [r.name for r in table.rows] == ["0.weight", "3.weight"]
    assert table.total_nnz_dense == 4 * 3 * 9 + 8
    assert table.total_nnz_sparse == 3 * 3 * 9 + 6
    assert table.total_fine_pct == pytest.approx(100 * (1 - (27 + 6) / (36 + 8)))
    assert table.total_cells()[0] == TOTAL_NAME
    assert len(table.rows[0].cells()) == len(COLUMNS) == 13
    assert table.rows[0].cells()[1] == "(4, 3, 3, 3)"


_ROW = re.compile(
    r"^#\s*\|\s*\d+\s*\|\s*(?:module\.)?(\S+)\s*\|\s*\(([\d, ]+)\)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
    r"\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|"
)


def _distiller_rows(path: Path) -> list[tuple[str, tuple[int, ...], int]]:
    rows = []
    for line in path.read_text().splitlines():
        m = _ROW.match(line)
        if m and "Total" not in line:
            rows.append((m.group(1), tuple(int(s) for s in m.group(2).split(",")), int(m.group(3))))
    return rows


def test_resnet20_dense_names_shapes_match_distiller_table(examples_dir):
    import prunecli.models as models

    model, _ = models.create_model("resnet20_cifar", dataset="cifar10")
    expected = _distiller_rows(Path(examples_dir) / "network_surgery" / "resnet20.network_surgery.yaml")
    assert len(expected) == 22
    table = sparsity_table(model)
    got = [(r.name, tuple(r.shape), r.nnz_dense) for r in table.rows]
    assert got == expected
    assert table.total_nnz_dense == 270896  # "# of parameters: 270,896" in the schedule's comments


def test_pattern_reproduces_published_row_percentages(examples_dir):
    """Rebuild published rows' zero structure and compare the structure columns.

    fc.weight in resnet20_filters.schedule_agp.yaml: 32 of 64 input features removed by a
    'Rows' pruner -> Rows 50%, Fine 50%, Cols 0%, 2D 0%.
    """
    rows = _distiller_rows(Path(examples_dir) / "agp-pruning" / "resnet20_filters.schedule_agp.yaml")
    assert ("fc.weight", (10, 64), 640) in rows
    w = torch.randn(10, 64)
    w[:, ::2] = 0
    row = sparsity_row("fc.weight", w)
    assert (row.cols_pct, row.rows_pct, row.pct_2d, row.fine_pct) == (0.0, 50.0, 0.0, 50.0)
    assert row.nnz_sparse == 320


_FULL_ROW = re.compile(
    r"^#\s*\|\s*\d+\s*\|\s*(?:module\.)?(\S+)\s*\|\s*\(([\d, ]+)\)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
    + r"\s*([\d.]+)\s*\|" * 6
)


def _published_rows(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        m = _FULL_ROW.match(line)
        if m and "Total" not in line:
            g = m.groups()
            pct = [float(v) for v in g[4:10]]
            out.append(
                {
                    "name": g[0],
                    "shape": tuple(int(s) for s in g[1].split(",")),
                    "nnz_dense": int(g[2]),
                    "nnz_sparse": int(g[3]),
                    "cols": pct[0],
                    "rows": pct[1],
                    "ch": pct[2],
                    "2d": pct[3],
                    "3d": pct[4],
                    "fine": pct[5],
                }  # fmt: skip
            )
    return out


def _count(pct: float, n: int) -> int:
    k = round(pct * n / 100)
    assert abs(100 * k / n - pct) < 1e-4, "published percentage is not a whole count"
    return k


def _build_conv(row: dict) -> torch.Tensor:
    """A 4D tensor with exactly the published numbers of zero filters, channels, kernels, elements."""
    f, c, kh, kw = row["shape"]
    w = torch.ones(f, c, kh * kw)
    zf, zc, zk = _count(row["3d"], f), _count(row["ch"], c), _count(row["2d"], f * c)
    w[:zf] = 0
    w[:, :zc] = 0
    extra = zk - (zf * c + zc * f - zf * zc)
    # diagonal order: consecutive picks land in different filters and channels, so the extra
    # zero kernels never complete a whole filter or channel
    nf, nc = f - zf, c - zc
    free = [(zf + i, zc + (i + d) % nc) for d in range(nc) for i in range(nf)]
    assert extra >= 0 and (extra < len(free) or extra == 0)
    for i, j in free[:extra]:
        w[i, j] = 0
    zeros_left = (row["nnz_dense"] - row["nnz_sparse"]) - zk * kh * kw
    for i, j in free[extra:]:
        take = min(zeros_left, kh * kw - 1)
        w[i, j, :take] = 0
        zeros_left -= take
    assert zeros_left == 0
    return w.reshape(f, c, kh, kw)


def _build_linear(row: dict) -> torch.Tensor:
    out_f, in_f = row["shape"]
    w = torch.ones(out_f, in_f)
    w[:, : _count(row["rows"], in_f)] = 0  # Distiller's Rows = input features
    w[: _count(row["cols"], out_f)] = 0  # Distiller's Cols = output neurons
    assert int((w != 0).sum()) == row["nnz_sparse"]
    return w


@pytest.mark.parametrize(
    "rel",
    [
        "network_surgery/resnet20.network_surgery.yaml",
        "agp-pruning/resnet20_filters.schedule_agp.yaml",
        "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml",
        "pruning_filters_for_efficient_convnets/resnet56_cifar_channel_rank.yaml",
        "network_trimming/resnet56_cifar_activation_apoz.yaml",
        "ssl/ssl_channels-removal_training_x1.8.yaml",
        "drop_filter/resnet20_cifar_randomlevel_training.yaml",
    ],
)
def test_published_rows_reproduced(examples_dir, rel):
    """Tensors with the published zero counts give back every published percentage."""
    rows = _published_rows(Path(examples_dir) / rel)
    assert rows
    for row in rows:
        w = _build_conv(row) if len(row["shape"]) == 4 else _build_linear(row)
        got = sparsity_row(row["name"], w)
        assert (got.nnz_dense, got.nnz_sparse) == (row["nnz_dense"], row["nnz_sparse"]), row["name"]
        for key, value in (("cols_pct", "cols"), ("rows_pct", "rows"), ("ch_pct", "ch"),
                           ("pct_2d", "2d"), ("pct_3d", "3d"), ("fine_pct", "fine")):  # fmt: skip
            assert getattr(got, key) == pytest.approx(row[value], abs=1e-5), (row["name"], key)


@pytest.mark.parametrize(
    ("rel", "name"),
    [
        ("agp-pruning/mobilenet.imagenet.schedule_agp.yaml", "fc.weight"),
        ("agp-pruning/alexnet.schedule_agp.yaml", "classifier.6.weight"),
    ],
)
def test_2018_tables_name_linear_structures_the_other_way(examples_dir, rel, name):
    """Tables logged in 2018 predate Distiller's transposed naming: their "Cols" are input features.

    mobilenet fc (1000, 1024): Cols 1.46484 % = 15/1024 (not a whole count of 1000 rows), so that
    column counted stored columns; the current convention reports those under "Rows".
    """
    row = next(r for r in _published_rows(Path(examples_dir) / rel) if r["name"] == name)
    out_f, in_f = row["shape"]
    w = torch.ones(out_f, in_f)
    w[:, : _count(row["cols"], in_f)] = 0
    w[: _count(row["rows"], out_f)] = 0
    got = sparsity_row(name, w)
    assert got.rows_pct == pytest.approx(row["cols"], abs=1e-5)
    assert got.cols_pct == pytest.approx(row["rows"], abs=1e-5)
    assert got.pct_2d == pytest.approx(row["2d"], abs=1e-5)  # 2D (zero stored rows) never changed
