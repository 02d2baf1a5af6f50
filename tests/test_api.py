"""The public facade: prunecli re-exports exactly prunecli.api, typed, and its functions compose."""

from __future__ import annotations

import inspect
import subprocess
import sys

import torch
from support.compression import train
from torch import nn

import prunecli
import prunecli.api as api
from prunecli.thinning import apply_recipe
from prunecli.thinning.compact import compose_recipes, informative_masks

SCHEDULE = """
version: 1
pruners:
  first_filters:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [module.conv1.weight]
  second_filters:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [module.conv2.weight]
  fine:
    class: SparsityLevelParameterPruner
    levels: {module.fc.weight: 0.5}
extensions:
  remove:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: simplenet_cifar
    dataset: cifar10
policies:
  - pruner: {instance_name: first_filters}
    epochs: [0]
  - extension: {instance_name: remove}
    epochs: [1]
  - pruner: {instance_name: second_filters}
    epochs: [2]
  - pruner: {instance_name: fine}
    epochs: [2]
"""


class TwoConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)  # zero filters output exact zeros
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def test_package_reexports_exactly_the_facade():
    assert set(prunecli.__all__) == {*api.__all__, "__version__"}
    for name in api.__all__:
        assert getattr(prunecli, name) is getattr(api, name), name


def test_facade_functions_are_fully_annotated():
    for name in api.__all__:
        obj = getattr(api, name)
        if inspect.isclass(obj):
            continue
        signature = inspect.signature(obj)
        assert signature.return_annotation is not inspect.Signature.empty, name
        for param in signature.parameters.values():
            assert param.annotation is not inspect.Parameter.empty, (name, param.name)


def test_import_prunecli_does_not_import_torch():
    code = "import sys, prunecli; print('torch' in sys.modules, 'prunecli.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cli_start_up_imports_no_library_stage():
    """``prunecli --help`` must stay fast: commands import torch, jsonschema and the library lazily."""
    heavy = ("torch", "jsonschema", "prunecli.schedule", "prunecli.api")
    code = f"import sys, prunecli.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_informative_masks_leave_out_none_and_all_ones():
    ones, fine = torch.ones(2, 3), torch.tensor([[1.0, 0.0, 1.0]])
    assert informative_masks({"a": ones, "b": None, "c": fine}) == {"c": fine}


def test_compose_recipes_skips_none_and_chains_indices():
    first = {"format": "prunecli-thinning-recipe", "version": 1, "tensors": {"w": [[0, [0, 2, 3, 5]]]}}
    second = api.ThinningRecipe(tensors={"w": [(0, [1, 3])]})
    composed = compose_recipes(None, first, second)
    assert composed.tensors == {"w": [(0, [2, 5])]}  # kept indices of the kept indices
    assert compose_recipes().is_empty()


def test_export_compact_composes_mid_run_thinning_and_leaves_the_live_model_alone():
    torch.manual_seed(0)
    model = TwoConvs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    example = torch.randn(1, 3, 8, 8)
    schedule = api.load_schedule("api.yaml", text=SCHEDULE)
    # the schedule says module.conv1.weight (DataParallel's names): resolved inside
    scheduler = api.build_compression(schedule, model, optimizer, example_input=example)
    train(scheduler, model, optimizer, epochs=3)
    assert model.conv1.out_channels == 4 and len(scheduler.thinning_recipes) == 1  # thinned at epoch 1
    live_conv2 = scheduler.masks["conv2.weight"].clone()
    live_fc = scheduler.masks["fc.weight"].clone()

    compact = api.export_compact(model, scheduler, example)

    assert model.conv2.out_channels == 8 and model.fc.in_features == 8  # the live model is untouched
    kept = live_conv2.flatten(1).any(1).nonzero().flatten().tolist()
    assert len(kept) == 4
    assert compact.model.conv1.out_channels == 4 and compact.model.conv2.out_channels == 4
    # conv2's filter mask is all ones after thinning; fc's element mask keeps its zeros, sliced
    assert set(compact.masks) == {"fc.weight"}
    torch.testing.assert_close(compact.masks["fc.weight"], live_fc[:, kept])
    # the recipe is relative to the dense model: both thinning steps, composed
    dense = apply_recipe(TwoConvs(), compact.recipe)
    dense.load_state_dict(compact.model.state_dict())
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(dense(x), compact.model(x))
        torch.testing.assert_close(compact.model.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-6)


def test_check_schedule_reports_without_raising(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        SCHEDULE.replace(
            "desired_sparsity: 0.5\n    weights: [module.conv1", "desird: 0.5\n    weights: [module.conv1"
        )
    )
    result = api.check_schedule(str(path))
    assert not result.valid
    assert any(p.location is not None and p.location.line for p in result.problems())
    good = tmp_path / "good.yaml"
    good.write_text(SCHEDULE)
    assert api.check_schedule(str(good)).valid
