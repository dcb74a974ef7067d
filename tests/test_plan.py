"""The dry run: validation errors name the key, the plan's figures follow from the recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import RecipeError, load_recipe
from shell import cli
from shell.plan import build_plan, format_plan, train_prompts

TEST_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "pocket-test.yaml"


def plan_of(*overrides):
    return build_plan(load_recipe(TEST_RECIPE, list(overrides)), "pocket-test")


def row(plan, stage):
    return next(s for s in plan.stages if s.stage == stage)


def test_plan_figures():
    r = load_recipe(TEST_RECIPE)
    plan = build_plan(r)
    assert train_prompts(r) == 600 - 40 - 24  # test and validation held out
    rl = row(plan, "reasoning_rl")
    assert (rl.steps, rl.processes, rl.generations, rl.max_tokens) == (4, 1, 4 * 16, 4 * 16 * 48)
    rs = row(plan, "rejection_sampling")
    assert (rs.prompts, rs.generations, rs.max_tokens) == (48, 48 * 4, 48 * 4 * 48)
    ev = row(plan, "eval x5")
    assert ev.generations == 24 * (4 + 1) * 5
    asr = row(plan, "all_scenario_rl")
    assert asr.generations == 4 * 16 + (4 // 2 + 2) * 16  # rollouts + guard checks
    gens, tokens = plan.total("r1-pipeline")
    assert gens == sum(s.generations for s in plan.stages if s.flow == "r1-pipeline") and tokens > gens


def test_more_processes_more_rollouts_per_step():
    rl = row(plan_of("reasoning_rl.num_processes=2"), "reasoning_rl")
    assert rl.processes == 2 and rl.generations == 2 * 4 * 16
    assert "8 prompts x 4 per step" in rl.what


@pytest.mark.parametrize("override, expected", [
    ("reasoning_rl.rewards=[{name: accuracyy}]", "reasoning_rl.rewards: unknown reward 'accuracyy'"),
    ("r1_zero.rewards=[{name: format, params: {nope: 1}}]", "r1_zero.rewards: reward 'format': unknown parameter"),
    ("model.base=./no/such/model", "model.base: local model path './no/such/model' does not exist"),
    ("distill.student_model=/no/such/student", "distill.student_model: local model path"),
])
def test_errors_name_the_key(override, expected):
    with pytest.raises(RecipeError, match="cannot run") as err:
        plan_of(override)
    assert expected in str(err.value)


def test_real_model_needs_a_real_cold_start_source(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    with pytest.raises(RecipeError, match="cold_start.source: generated exists for the pocket world only"):
        plan_of(f"model.base={model}")
    with pytest.raises(RecipeError, match="cold_start.collect.exemplars"):
        plan_of(f"model.base={model}", "cold_start.source=few_shot")
    collected = plan_of(f"model.base={model}", "cold_start.source=r1_zero")
    assert "sample R1-Zero (this run)" in row(collected, "cold_start_data").what
    assert row(collected, "cold_start_data").generations == 400 * 4
    assert row(collected, "r1_zero").flow == "r1-pipeline"  # built first, for the cold start
    plan = plan_of(f"model.base={model}", f"cold_start.dataset={tmp_path / 'cs.jsonl'}")
    assert any("cold_start.dataset" in n and "does not exist yet" in n for n in plan.notes)
    assert row(plan, "base").what.startswith(f"use {model}")


def test_local_dir_without_config_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match="without a config.json"):
        plan_of(f"model.base={tmp_path}", "cold_start.dataset=x.jsonl")


def test_vllm_fallback_is_noted():
    from core.generation import vllm_unavailable

    plan = plan_of("reasoning_rl.use_vllm=true", "rejection_sampling.use_vllm=true")
    assert "(vLLM," in row(plan, "reasoning_rl").what
    if vllm_unavailable():  # a GPU machine with vLLM has nothing to note
        assert any(n.startswith("use_vllm:") for n in plan.notes)
        assert any(n.startswith("rejection_sampling.use_vllm:") for n in plan.notes)


def test_cli_dry_run(capsys):
    assert cli.main(["dry-run", "--recipe", str(TEST_RECIPE), "--set", "sft.steps=7"]) == 0
    out = capsys.readouterr().out
    assert "recipe pocket-test" in out and "valid" in out
    assert format_plan(plan_of("sft.steps=7")).splitlines()[4:] == out.strip().splitlines()[4:]
    assert cli.main(["dry-run", "--recipe", str(TEST_RECIPE), "--set", "model.base=./nowhere"]) == 2
    assert "model.base" in capsys.readouterr().err
