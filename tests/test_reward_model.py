"""The reward model: general tasks, preference pairs, the training stage and the reward that uses it."""

from __future__ import annotations

import json

import pytest
import torch

from core.config import RewardSpec
from pocket.general import general_rows, world
from pocket.preferences import KINDS, preference_pairs
from rewards.accuracy import verify
from rewards.catalog import build
from rewards.language import language_share

RM_OVERRIDES = ["reward_model.pairs=600", "reward_model.heldout_pairs=150", "reward_model.steps=80",
                "reward_model.batch_size=16", "reward_model.learning_rate=1e-3"]


def test_general_rows_are_seeded_and_answered():
    rows = general_rows(60, seed=3)
    assert rows == general_rows(60, seed=3)
    assert rows != general_rows(60, seed=4)
    assert {r["task"] for r in rows} == {"general/rewrite", "general/word", "general/fact"}
    facts = world(3)
    expected_of = {
        "upper": lambda m: m["text"].upper(),
        "reverse": lambda m: " ".join(reversed(m["text"].split())),
        "count": lambda m: str(len(m["word"])),
        "first": lambda m: m["word"][0],
        "colour": lambda m: facts[m["town"]]["colour"],
        "animal": lambda m: facts[m["town"]]["animal"],
    }
    for row in rows:
        meta = json.loads(row["metadata"])
        expected = expected_of[meta["kind"]](meta)
        assert row["answer"] == expected, row


def test_preference_pairs_differ_in_one_way():
    pairs = preference_pairs(general_rows(90, seed=0), seed=0)
    assert [p["kind"] for p in pairs[:3]] == list(KINDS)
    for pair in pairs:
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        answer = chosen.split("<answer>")[1].split("</answer>")[0].strip()
        assert language_share(chosen, "en") == 1.0
        if pair["kind"] == "mixed":
            assert language_share(rejected, "en") < 1.0
        elif pair["kind"] == "rambling":
            assert len(rejected) > len(chosen) and "think again" in rejected
        else:
            assert rejected.split("<answer>")[1].split("</answer>")[0].strip() != answer


@pytest.fixture(scope="module")
def trained(own_run):
    """(store, run_id, ref) of a test-size reward model trained on the shared test-size pocket base,
    built (not reused) in this module's own run id. How long it takes is bench/'s business
    (`make bench`: stage `reward_model` wall)."""
    # On 2 cores shared with other work, torch's default 2 threads spin against each other
    # (measured: ~20x slower per step than 1 thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from core.config import load_recipe
        from core.stage import StageCall
        from stages import graph

        store, run_id, refs = own_run("reward-model")
        recipe = load_recipe("configs/pocket-test.yaml", RM_OVERRIDES)
        spec = graph.BY_NAME["reward_model"]
        outcome = spec.run(StageCall(spec, recipe, store, run_id, {"base": refs["base"]}))
        assert not outcome.reused, "a reused reward model would test nothing"
        yield store, run_id, outcome.ref
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_reward_model_ranks_heldout_pairs(trained):
    store, run_id, ref = trained
    metrics = store.manifest(run_id, "reward_model")["metrics"]
    assert metrics["heldout_pairs"] == 150
    assert metrics["heldout_accuracy"] > 0.7
    assert metrics["lora"] is False  # the pocket model is tiny: full fine-tune


@pytest.mark.slow
def test_reward_model_reward_prefers_chosen(trained):
    from stages.reward_model import model_path

    _, _, ref = trained
    (func,), _ = build([RewardSpec(name="reward_model")], reward_model_path=str(model_path(ref)))
    assert func.__name__ == "reward_model"
    pairs = [json.loads(line) for line in (model_path(ref).parent / "heldout_pairs.jsonl").read_text().splitlines()]
    pairs = [p for p in pairs if p["kind"] != "wrong"][:40]
    prompts = [p["prompt"] for p in pairs]
    chosen = func([p["chosen"] for p in pairs], prompts=prompts)
    rejected = func([p["rejected"] for p in pairs], prompts=prompts)
    assert all(isinstance(s, float) for s in chosen + rejected)
    assert sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs) > 0.7
    # A template that pre-fills <think>: the completion starts inside the thinking.
    prefilled = [[*p["prompt"], {"role": "assistant", "content": "<think>"}] for p in pairs[:4]]
    inside = [[{"role": "assistant", "content": p["chosen"][0]["content"].replace("<think>", "", 1)}]
              for p in pairs[:4]]
    assert func(inside, prompts=prefilled) == pytest.approx(chosen[:4], abs=1e-4)


def test_reward_model_without_a_path_fails_safely():
    (func,), _ = build([RewardSpec(name="reward_model")])
    assert func(["<think>x</think> y"], prompts=["q"]) == [None]


def test_general_answers_are_not_verifiable_by_case():
    # Why general rows need the reward model: normalised matching ignores case, so a rewrite that
    # was never upper-cased still "matches".
    assert verify("red cat", "RED CAT") == 1.0


@pytest.mark.slow
def test_the_reward_model_checkpoints_and_resumes_like_every_trainer(pocket_run, tmp_path):
    """core/trainers.py trains it: checkpoints every save_steps, and a second attempt in the same work
    directory (a killed stage's) resumes from the last one instead of starting over."""
    import datasets

    from core.config import RewardModelConfig
    from core.layout import CHECKPOINTS, LOG_HISTORY, MODEL
    from core.trainers import train_reward
    from pocket.general import general_rows
    from pocket.preferences import preference_pairs

    base = pocket_run[3].path
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in preference_pairs(general_rows(64, 0), 0)]
    data = datasets.Dataset.from_list(pairs)
    lora = load_recipe_lora()
    first = train_reward(base=base, lora=lora, dataset=data, work=tmp_path, report_to="none",
                         cfg=RewardModelConfig(steps=4, save_steps=2, batch_size=8))
    assert first["resumed_from"] is None and first["steps"] == 4
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (tmp_path / MODEL / "config.json").is_file() and (tmp_path / LOG_HISTORY).is_file()
    again = train_reward(base=base, lora=lora, dataset=data, work=tmp_path, report_to="none",
                         cfg=RewardModelConfig(steps=6, save_steps=2, batch_size=8))
    assert again["resumed_from"] == "checkpoint-4" and again["steps"] == 6


def load_recipe_lora():
    from core.config import load_recipe

    return load_recipe("configs/pocket-test.yaml").model.lora
