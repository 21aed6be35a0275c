"""`Recipe`: one field list shared by `TrainingConfig` and `ProxyOptions`, defaults unchanged."""

from __future__ import annotations

import dataclasses

import pytest

from heldout.errors import TrainingError
from heldout.training import Recipe, TrainingConfig
from heldout.training.config import DEFINING_FIELDS
from heldout.training.recipe import recipe_fields, recipe_of


def test_a_config_is_a_recipe_plus_its_layout():
    recipe_names = set(recipe_fields())
    config_names = [field.name for field in dataclasses.fields(TrainingConfig)]
    assert recipe_names <= set(config_names)
    # What defines an experiment on resume is the recipe, less where its data lies.
    assert set(DEFINING_FIELDS) == recipe_names - {"data_dir"}
    # The paper's MNIST recipe, as before Recipe existed.
    assert Recipe() == TrainingConfig().recipe
    assert (Recipe().epochs, Recipe().batch_size, Recipe().learning_rate) == (20, 256, 0.1)
    assert (Recipe().momentum, Recipe().warmup_fraction, Recipe().arch) == (0.9, 0.15, "mlp")
    assert TrainingConfig().subset_ratios == (0.1, 0.3, 0.5, 0.7, 0.9)
    assert TrainingConfig().runs_per_ratio == 16


def test_from_recipe_keeps_the_recipe_and_takes_the_layout():
    recipe = Recipe(dataset="mnist", epochs=3, seed=5, mlp_hidden_sizes=[64, 32])
    config = TrainingConfig.from_recipe(recipe, subset_ratios=(0.5,), runs_per_ratio=2)
    assert config.recipe == recipe and type(config.recipe) is Recipe
    assert (config.subset_ratios, config.runs_per_ratio) == ((0.5,), 2)
    assert config.mlp_hidden_sizes == (64, 32)
    assert TrainingConfig.from_recipe(config, epochs=4).epochs == 4  # settings win
    assert recipe_of(config) == recipe and recipe_of(recipe) is recipe


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"learning_rate": float("nan")}, "learning_rate must be positive and finite"),
        ({"learning_rate": float("inf")}, "learning_rate must be positive and finite"),
        ({"weight_decay": float("inf")}, "weight_decay must be at least 0 and finite"),
        ({"momentum": float("nan")}, r"momentum must be in \[0, 1\)"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"arch": "vgg"}, "arch must be one of"),
        ({"augment": True}, "augment and checkpoint_every apply"),
        ({"arch": "resnet50", "mlp_hidden_sizes": (64,)}, "applies to arch mlp only"),
        ({"compute_dtype": "auto"}, "compute_dtype must be float32 or bfloat16"),
    ],
)
def test_a_recipe_refuses_values_out_of_range(fields, needle):
    with pytest.raises(TrainingError, match=needle):
        Recipe(**fields)
    with pytest.raises(TrainingError, match=needle):
        TrainingConfig(**fields)


def test_the_layout_is_checked_by_the_config():
    with pytest.raises(TrainingError, match="runs_per_ratio must be at least 1, got 0"):
        TrainingConfig(runs_per_ratio=0)
    with pytest.raises(TrainingError, match="augment and checkpoint_every apply"):
        TrainingConfig(checkpoint_every=2)
    Recipe(arch="small_inception", augment=True)  # allowed for a convolutional model
