"""Recipes are plain data, survive torch.load(weights_only=True), and rebuild compact models."""

from __future__ import annotations

import io

import pytest
import torch
from support.patterns import build
from support.synthetic import zero_channels

from prunecli.errors import ThinningError
from prunecli.graph import build_dependency_graph
from prunecli.thinning import ThinningRecipe, apply_recipe, thin_model


@pytest.mark.parametrize("name", ["concat", "depthwise", "grouped", "squeeze_excite", "flatten_linear"])
def test_recipe_round_trip_rebuilds_the_compact_model(name):
    model, x = build(name)
    zero_channels(model, build_dependency_graph(model, x), 0.5, seed=3)
    recipe = thin_model(model, x)
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    torch.save({"recipe": recipe.to_dict(), "state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    dense, _ = build(name, seed=7)
    apply_recipe(dense, ThinningRecipe.from_dict(loaded["recipe"]))
    dense.load_state_dict(loaded["state_dict"])
    with torch.no_grad():
        torch.testing.assert_close(dense(x), expected)


def test_apply_recipe_twice_is_harmless_and_wrong_recipe_is_rejected():
    model, x = build("conv_bn")
    with torch.no_grad():
        model.conv1.weight[0] = 0
        model.conv1.bias[0] = 0
    recipe = thin_model(model, x)
    dense, _ = build("conv_bn")
    apply_recipe(dense, recipe.to_dict())
    apply_recipe(dense, recipe)
    assert dense.conv1.weight.shape == (7, 3, 3, 3)
    bad = ThinningRecipe(tensors={"conv1.weight": [(0, [0, 99])]})
    with pytest.raises(ThinningError):
        apply_recipe(build("conv_bn")[0], bad)
    with pytest.raises(ThinningError):
        apply_recipe(build("conv_bn")[0], ThinningRecipe(tensors={"nope.weight": [(0, [0])]}))
    with pytest.raises(ThinningError):
        ThinningRecipe.from_dict({"tensors": {}})


def test_to_dict_holds_only_plain_data():
    model, x = build("grouped")
    zero_channels(model, build_dependency_graph(model, x), 0.5)
    data = thin_model(model, x).to_dict()

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(w) for k, w in v.items())
        if isinstance(v, list):
            return all(plain(w) for w in v)
        return isinstance(v, (int, str, float, bool)) or v is None

    assert plain(data)
    assert data["format"] == "prunecli-thinning-recipe"
