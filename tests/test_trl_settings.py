"""Every trainer setting reachable: each training section's `trl` mapping goes straight to the
trainer's TRL config (read back from the config the trainer gets), is checked against that class
when the recipe loads (an unknown key is an error with a did-you-mean, like the rest of the recipe),
cannot override what the section or the project sets, and is part of the stage's cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
from trl import GRPOConfig, RewardConfig, SFTConfig

from core.config import RecipeError, load_recipe
from core.trainers import grpo_args, trl_config

TEST_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "pocket-test.yaml"


def test_a_trl_key_reaches_the_grpo_config():
    recipe = load_recipe(TEST_RECIPE, ["r1_zero.trl={num_iterations: 2, mask_truncated_completions: true, "
                                       "importance_sampling_level: sequence, top_entropy_quantile: 0.2}"])
    args = grpo_args(recipe.r1_zero, Path("/tmp/unused"), 0, [1.0, 0.25], report_to="none")
    assert isinstance(args, GRPOConfig)
    assert (args.num_iterations, args.mask_truncated_completions, args.importance_sampling_level,
            args.top_entropy_quantile) == (2, True, "sequence", 0.2)
    # the curated fields still arrive under TRL's names, and the project's own settings are kept
    assert (args.max_steps, args.per_device_train_batch_size, args.loss_type) == (4, 16, "dapo")
    assert args.reward_weights == [1.0, 0.25] and args.save_strategy == "steps"


def test_a_trl_key_may_change_a_default_we_chose():
    recipe = load_recipe(TEST_RECIPE, ["sft.trl={lr_scheduler_type: linear}"])
    assert trl_config(SFTConfig, recipe.sft, Path("/tmp/unused"), 0, "none",
                      {"lr_scheduler_type": "cosine"}).lr_scheduler_type == "linear"
    rm = load_recipe(TEST_RECIPE, ["reward_model.trl={center_rewards_coefficient: 0.1}"]).reward_model
    args = trl_config(RewardConfig, rm, Path("/tmp/unused"), 0, "none", {"center_rewards_coefficient": 0.01})
    assert args.center_rewards_coefficient == 0.1 and args.warmup_steps == 4  # a tenth of 40 steps


@pytest.mark.parametrize(("override", "message"), [
    ("r1_zero.trl={num_iteration: 2}", r"r1_zero\.trl: .*'num_iteration' is not a field of TRL's GRPOConfig "
                                        r"\(did you mean 'num_iterations'\?\)"),
    ("sft.trl={max_steps: 3}", r"sft\.trl: .*'max_steps' is this section's `steps`; set that instead"),
    ("reasoning_rl.trl={output_dir: /tmp/x}", r"reasoning_rl\.trl: .*'output_dir' is set by the project"),
    ("reward_model.trl={num_generations: 4}", r"reward_model\.trl: .*not a field of TRL's RewardConfig"),
])
def test_a_bad_trl_key_fails_when_the_recipe_loads(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(TEST_RECIPE, [override])


def test_the_trl_mapping_is_in_the_stage_key():
    from core.runstore import RunStore
    from core.stage import StageCall
    from stages import graph

    def key(*overrides):
        call = StageCall(graph.BY_NAME["r1_zero"], load_recipe(TEST_RECIPE, list(overrides)), RunStore("/tmp/x"), "r")
        return call.key()

    assert key() != key("r1_zero.trl={num_iterations: 2}") != key("r1_zero.trl={num_iterations: 3}")
    assert key() == key("reasoning_rl.trl={num_iterations: 2}")
