"""Every recipe in configs/ loads against the installed schema and dry-runs (no weights loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import R1_SYSTEM, load_recipe
from shell.plan import build_plan, format_plan

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))
REAL = [p for p in RECIPES if p.name.startswith("qwen")]


def test_there_are_real_model_recipes():
    assert {p.name for p in REAL} >= {"qwen2.5-0.5b-instruct-gsm8k.yaml", "qwen2.5-1.5b-math.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_dry_runs(path):
    recipe = load_recipe(path)
    plan = build_plan(recipe, str(path))
    text = format_plan(plan)
    assert f"recipe {recipe.name}" in text and "reasoning_rl" in text
    rl = next(s for s in plan.stages if s.stage == "reasoning_rl")
    assert rl.generations == recipe.reasoning_rl.steps * recipe.reasoning_rl.batch_size \
        * recipe.reasoning_rl.gradient_accumulation_steps * recipe.reasoning_rl.num_processes


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_opens_with_its_launch_command(path):
    head = path.read_text().splitlines()[:8]
    assert head[0].startswith("#")
    assert any("r1 pipeline --recipe" in line or "make pipeline" in line for line in head)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_recipe_settings(path):
    r = load_recipe(path)
    assert r.model.base.startswith("Qwen/Qwen2.5-") and r.model.dtype == "bfloat16"
    assert r.data.template.system == R1_SYSTEM  # the paper's template
    sources = r.data.sources
    assert all(s.kind == "hub" for s in sources)
    assert {s.answer_format for s in sources} <= {"gsm8k", "boxed"}
    assert r.cold_start.source == "r1_zero" and not r.cold_start.dataset  # collected: no file to bring
    trained = [r.cold_start, r.sft, r.reasoning_rl, r.all_scenario_rl, r.r1_zero, r.distill.sft, r.distill.rl]
    assert all(c.bf16 for c in trained)
    for rl in (r.reasoning_rl, r.all_scenario_rl, r.r1_zero, r.distill.rl):
        assert rl.temperature == 1.0 and rl.use_vllm  # the paper's rollout temperature
    assert (r.eval.temperature, r.eval.top_p) == (0.6, 0.95)  # and its evaluation sampling
    assert r.model.lora.target_modules == "all-linear"
