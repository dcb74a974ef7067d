"""Reward routing in all-scenario RL (rewards/routing.py): on a batch of the stage's own mixed
prompts, called the way TRL calls rewards, accuracy judges exactly the verifiable rows and the
trained reward model exactly the general ones, each row scored with its own prompt and completion."""

from __future__ import annotations

import pytest

from rewards.routing import grpo_rewards
from stages import grpo
from stages.reward_model import model_path


@pytest.fixture(scope="module")
def batch(trained_run, test_recipe):
    """(rewards by name, weights by name, TRL's reward kwargs for 8 mixed rows); verifiable rows
    alternate a right and a wrong final answer."""
    _, _, refs = trained_run
    cfg = test_recipe.all_scenario_rl
    funcs, weights = grpo_rewards(cfg.rewards, reward_model_path=str(model_path(refs["reward_model"])))
    data = grpo.training_prompts(cfg, test_recipe, refs["task_data"])
    general = [r for r in data if r["kind"] == "general"][:4]
    verifiable = [r for r in data if r["kind"] == "verifiable"][:4]
    rows = [r for pair in zip(verifiable, general, strict=True) for r in pair]
    answers = [r["answer"] if r["kind"] == "general" or i % 4 == 0 else "9999" for i, r in enumerate(rows)]
    completions = [[{"role": "assistant", "content": f"<think>i look .</think> <answer>{a}</answer>"}]
                   for a in answers]
    kwargs = {"prompts": [r["prompt"] for r in rows], "completions": completions, "trainer_state": None,
              **{col: [r[col] for r in rows] for col in data.column_names if col != "prompt"}}
    names = [f.__name__ for f in funcs]
    return dict(zip(names, funcs, strict=True)), dict(zip(names, weights, strict=True)), kwargs


def test_every_recipe_reward_is_routed_and_every_monitor_is_weightless(batch, test_recipe):
    funcs, weights, _ = batch
    specs = test_recipe.all_scenario_rl.rewards
    assert [s.name for s in specs] == list(funcs)[: len(specs)]
    assert [weights[s.name] for s in specs] == [s.weight for s in specs]
    assert all(w == 0.0 for name, w in weights.items() if name not in {s.name for s in specs})


def test_accuracy_judges_verifiable_rows_only(batch):
    funcs, _, kw = batch
    scores = funcs["accuracy"](**kw)
    assert kw["kind"] == ["verifiable", "general"] * 4
    assert scores[1::2] == [None] * 4  # general rows: cannot judge
    assert scores[0::2] == [1.0, 0.0, 1.0, 0.0]  # right, wrong, right, wrong


def test_reward_model_judges_general_rows_only_each_with_its_own_prompt(batch):
    funcs, _, kw = batch
    scores = funcs["reward_model"](**kw)
    assert scores[0::2] == [None] * 4
    assert all(isinstance(s, float) for s in scores[1::2])
    # each general row alone gives the same score: nothing shifted between rows
    for i in range(1, 8, 2):
        alone = {k: [v[i]] if isinstance(v, list) else v for k, v in kw.items()}
        assert funcs["reward_model"](**alone) == [pytest.approx(scores[i], abs=1e-5)]
    assert len({round(s, 6) for s in scores[1::2]}) > 1  # not one constant for every row


def test_rule_rewards_for_all_rows_score_every_row(batch):
    funcs, _, kw = batch
    for name in ("format", "language_consistency"):
        scores = funcs[name](**kw)
        assert all(isinstance(s, float) for s in scores), (name, scores)
