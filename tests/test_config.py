"""Recipes: every YAML in configs/ loads; mistakes name the file, the key and the expectation."""

from pathlib import Path

import pytest
import yaml

from core.config import Recipe, RecipeError, load_recipe, parse_recipe

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    assert recipe.resolved()["name"] == recipe.name


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


MINIMAL = """
name: t
data:
  sources: [{kind: reasoning_gym, name: chain_sum, size: 10}]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "model:\n  pocket:\n    hidden_sise: 64\n",
         ["bad.yaml", "model.pocket.hidden_sise", "unknown key", "did you mean 'hidden_size'"]),
        (MINIMAL + "model:\n  pocket:\n    steps: many\n", ["bad.yaml", "model.pocket.steps", "integer", "many"]),
        (MINIMAL + "model:\n  dtype: float8\n", ["model.dtype", "float32"]),
        ("name: t\n", ["data", "required key is missing"]),
        (MINIMAL.replace("reasoning_gym", "ftp"), ["data.sources.0", "ftp"]),
        (MINIMAL + "data_typo: 1\n", ["unknown key 'data_typo'", "expected one of"]),
        (MINIMAL + "model:\n  pocket:\n    hidden_size: 100\n    num_heads: 3\n", ["divisible by num_heads"]),
        ("- just\n- a list\n", ["bad.yaml", "mapping"]),
        ("name: [unclosed\n", ["bad.yaml", "not valid YAML"]),
    ],
)
def test_recipe_errors_name_file_key_and_expectation(tmp_path, text, expected):
    with pytest.raises(RecipeError) as err:
        load_recipe(_write(tmp_path, text))
    for fragment in expected:
        assert fragment in str(err.value)


def test_missing_file():
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe("configs/nope.yaml")


def test_overrides_are_typed_and_validated(tmp_path):
    recipe = load_recipe(_write(tmp_path, MINIMAL), ["model.pocket.steps=7", "data.test_size=3"])
    assert recipe.model.pocket.steps == 7 and recipe.data.test_size == 3
    with pytest.raises(RecipeError, match="model.pocket.steps"):
        load_recipe(_write(tmp_path, MINIMAL), ["model.pocket.steps=abc"])
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(_write(tmp_path, MINIMAL), ["model.pocket.steps"])


def test_recipe_by_name_and_from_data():
    assert load_recipe("pocket-test").name == "pocket-test"
    assert parse_recipe(yaml.safe_load(MINIMAL)).data.sources[0].name == "chain_sum"


def test_a_bad_override_is_blamed_on_the_override_not_the_file(tmp_path):
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, ["model.pocket.stepz=5"])
    message = str(err.value)
    assert "override 'model.pocket.stepz=5'" in message and "unknown key 'stepz'" in message
    assert "bad.yaml" not in message
    # a file mistake and an override mistake together: each named by its own origin
    with pytest.raises(RecipeError) as err:
        load_recipe(_write(tmp_path, MINIMAL + "model:\n  dtype: float8\n"), ["model.pocket.steps=abc"])
    lines = str(err.value).splitlines()
    assert "bad.yaml" in lines[0]
    assert any("model.dtype" in line and "override" not in line for line in lines)
    assert any("model.pocket.steps" in line and "override 'model.pocket.steps=abc'" in line for line in lines)
