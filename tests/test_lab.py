"""The ablation lab: every arm's overrides reach TRL's config (read back from what the trainer gets),
the world without checks has none, the measures compute the right figures on hand-made rollouts and
samples, each arm's verdict follows its stated criterion, and the flow runs arms end to end at test
size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.config import load_recipe
from core.stats import pass_at_k
from core.trainers import grpo_args
from lab import arms, measure

ROOT = Path(__file__).resolve().parent.parent
TEST_RECIPE = ROOT / "configs" / "pocket-test.yaml"


def trl_config(variant: arms.Variant):
    recipe = load_recipe(TEST_RECIPE, [*arms.COMMON, *variant.overrides])
    return recipe, grpo_args(recipe.r1_zero, Path("/tmp/unused"), 0, [1.0] * len(recipe.r1_zero.rewards), "none")


@pytest.mark.parametrize(("variant", "expected"), [
    ("reference", {"loss_type": "dapo", "scale_rewards": "group", "beta": 0.0, "num_iterations": 1}),
    ("grpo", {"loss_type": "grpo", "scale_rewards": "group"}),
    ("dr_grpo", {"loss_type": "dr_grpo", "scale_rewards": "none"}),
    ("clip_0.20", {"num_iterations": 2, "epsilon": 0.2, "epsilon_high": 0.2}),
    ("clip_0.28", {"num_iterations": 2, "epsilon_high": 0.28}),
    ("beta_0.001", {"beta": 0.001}),
    ("beta_0.04", {"beta": 0.04}),
])
def test_each_variants_overrides_reach_trls_config(variant, expected):
    v = {x.name: x for x in arms.variants(list(arms.ARMS))}[variant]
    _, config = trl_config(v)
    assert {k: getattr(config, k) for k in expected} == expected


def test_the_format_arm_trains_on_accuracy_alone_and_the_no_checks_world_has_no_check():
    from pocket import world
    from pocket.corpus import corpus

    recipe, config = trl_config(arms.BY_NAME["format_off"].variants[0])
    assert [r.name for r in recipe.r1_zero.rewards] == ["accuracy"] and config.reward_weights == [1.0]
    no_checks = arms.BY_NAME["no_checks"].variants[0]
    assert no_checks.own_base
    recipe = load_recipe(TEST_RECIPE, list(no_checks.overrides))
    cfg = recipe.model.pocket.model_copy(update={"seed": 0, "practice_documents": 400})
    replies = [reply for _, reply in corpus(cfg, recipe.data.template, set())]
    assert replies and not any(world.has_check(r) or "wait" in r for r in replies)
    # the same corpus with the recipe's own settings does check
    with_checks = load_recipe(TEST_RECIPE).model.pocket.model_copy(update={"seed": 0, "practice_documents": 400})
    assert any(world.has_check(r) for _, r in corpus(with_checks, recipe.data.template, set()))


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert measure.pass_at_ks([1, 0], 2, (1, 2)) == {"1": 0.25, "2": 0.5}  # prompts with 1 and 0 right of 2


def test_rollout_series_counts_written_checked_and_the_length_gap_per_step(tmp_path):
    row = {"answer": "3", "task": "chain_sum", "metadata": json.dumps({"expression": "1 + 2"})}
    long_row = {"answer": "6", "task": "chain_sum", "metadata": json.dumps({"expression": "1 + 2 + 3"})}
    rollouts = [
        {"step": 1, "completion": "<think> i start from 1 + 2 . then 3 . </think> <answer> 3 </answer>", "tokens": 20, **row},
        {"step": 1, "completion": "<answer> 4 </answer>", "tokens": 5, **row},
        {"step": 1, "completion": "<think> 1 + 2 + 3 . check : 1 + 2 = 3 . wait , not 5 . </think> <answer> 6 </answer>",
         "tokens": 40, **long_row},
        {"step": 1, "completion": "<think> i start from 1 + 2 + 3 . then 5 . </think> <answer> 5 </answer>",
         "tokens": 50, **long_row},
        {"step": 2, "completion": "<answer> 3 </answer>", "tokens": 4, **row},
    ]
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    s = measure.rollout_series(path)
    assert s["step"] == [1, 2]
    assert s["written"] == [0.75, 0.0] and s["checked"] == [0.25, 0.0] and s["reflected"] == [0.25, 0.0]
    # 2 terms: wrong 5 - right 20 = -15; 3 terms: wrong 50 - right 40 = +10; their mean
    assert s["length_gap"] == [pytest.approx(-2.5), None]


def measures(pass_at_1=0.9, right=(15, 14, 16, 13), **final):
    return {"pass_at_1": pass_at_1, "samples": 16, "right_by_prompt": list(right), "final": {"length_gap": 0.0, "entropy": 0.1, "clip_high": 0.0, "length": 90,
                                                "reflected": 0.3, "checked": 0.3, **final},
            "written_switch_step": 10, "pass_at_k": {"16": 0.95}, "longer_pass_at_1": 0.2}


@pytest.mark.parametrize(("grpo_gap", "dr_gap", "verdict"), [(12.0, 2.0, "confirmed"), (-3.0, 1.0, "refuted"),
                                                              (5.0, 6.0, "refuted")])
def test_a_verdict_follows_its_criterion(grpo_gap, dr_gap, verdict):
    by_seed = {s: {"reference": measures(), "grpo": measures(length_gap=grpo_gap),
                   "dr_grpo": measures(length_gap=dr_gap)} for s in (0, 1, 2)}
    assert arms.judge_dr_grpo(by_seed)[0] == verdict


def test_a_clip_that_never_binds_is_inconclusive_whatever_the_entropies():
    def seed(entropy_020, entropy_028, clip_high):
        return {"clip_0.20": measures(entropy=entropy_020), "clip_0.28": measures(entropy=entropy_028, clip_high=clip_high)}

    assert arms.judge_clip_higher({s: seed(0.0681, 0.0680, 0.0) for s in (0, 1, 2)})[0] == "inconclusive"
    assert arms.judge_clip_higher({s: seed(0.0681, 0.0680, 0.01) for s in (0, 1, 2)})[0] == "refuted"
    assert arms.judge_clip_higher({s: seed(0.05, 0.09, 0.01) for s in (0, 1, 2)})[0] == "confirmed"


def test_seeds_that_disagree_are_inconclusive():
    agree = {"reference": measures(), "grpo": measures(length_gap=12.0), "dr_grpo": measures(length_gap=2.0)}
    disagree = {**agree, "grpo": measures(length_gap=1.0), "dr_grpo": measures(length_gap=3.0)}
    assert arms.judge_dr_grpo({0: agree, 1: disagree, 2: agree})[0] == "inconclusive"


def test_the_figures_over_seeds_pair_prompts_and_carry_an_interval():
    same = {s: {"reference": measures(), "beta_0.001": measures(), "beta_0.04": measures()} for s in (0, 1, 2)}
    assert arms.judge_kl(same)[2] == "pass@1 beta 0 minus 0.001 +0.000 [+0.000, +0.000], minus 0.04 +0.000 [+0.000, +0.000]"
    # every prompt two right samples in 16 fewer at beta 0.04, on every seed: exactly 1/8, nothing to resample
    fewer = {s: {**v, "beta_0.04": measures(right=(13, 12, 14, 11))} for s, v in same.items()}
    assert arms.judge_kl(fewer)[2].endswith("minus 0.04 +0.125 [+0.125, +0.125]")
    # seeds that disagree widen the interval around the mean
    mixed = {0: fewer[0], 1: fewer[1], 2: {**same[2], "beta_0.04": measures(right=(16, 16, 16, 16))}}
    low, high = (float(x) for x in arms.judge_kl(mixed)[2].split("minus 0.04 ")[1].split(" [")[1].rstrip("]").split(", "))
    assert low < 0 < 0.125 <= high
    assert arms.spread({0: 1.0, 1: 3.0, 2: 2.0}, lambda v: v) == "+2.000 (seeds +1.000 to +3.000)"


def test_every_arm_states_claim_metric_and_criterion_and_its_variants_are_named_once():
    assert {a.name for a in arms.ARMS} == {"reflection_at_step_0", "reach", "dr_grpo", "format_off", "clip_higher",
                                           "kl", "no_checks"}
    for a in arms.ARMS:
        assert a.claim and a.source and a.metric and "confirmed if" in a.criterion and "refuted if" in a.criterion
    names = [v.name for v in arms.variants(list(arms.ARMS))]
    assert names[0] == "reference" and len(names) == len(set(names)) == 9


def test_the_committed_lab_is_gathered_from_the_committed_seed_files_and_the_readme_quotes_it():
    from lab.__main__ import gather, table
    from lab.flow import RESULTS

    committed = json.loads((RESULTS / "lab.json").read_text())
    assert json.loads(json.dumps(gather(list(arms.ARMS)))) == committed
    text = (ROOT / "README.md").read_text()
    quoted = re.search(r"<!-- lab table: python -m lab --markdown -->\n(.*?)<!-- end lab table -->", text, re.S)
    assert quoted, "README: no lab table between its markers"
    # every arm, each with the committed figures over the seeds, criterion and verdict
    assert quoted.group(1) == table(committed, per_seed=False)
    assert {r["arm"] for r in committed["arms"]} == {a.name for a in arms.ARMS}


@pytest.mark.slow
def test_the_lab_flow_runs_arms_end_to_end(pocket_run, prefect_harness, tmp_path, monkeypatch):
    from lab.__main__ import gather, table
    from lab.flow import lab

    store = pocket_run[0]
    monkeypatch.setenv("R1_RUNS_DIR", str(store.root))
    out = lab(recipe=str(TEST_RECIPE), arms=["reach", "format_off"], seed=0, results=str(tmp_path),
              overrides=["eval.max_new_tokens=48"])
    assert set(out["variants"]) == {"reference", "no_format"} and out["audit"]["k"] == arms.AUDIT_K
    for name, v in out["variants"].items():
        assert 0 <= v["pass_at_1"] <= 1 and v["series"]["rollouts_step"] and set(v["pass_at_k"]) >= {"1", "4"}
        assert v["pass_at_1"] == pytest.approx(sum(v["right_by_prompt"]) / v["samples"] / len(v["right_by_prompt"]))
        # the walls are the stages' own, as built: a resumed lab reports the same
        stages = store.stages(f"lab-pocket-test-{name}-seed0")
        assert {m["stage"] for m in stages} == {"r1_zero", "eval_r1_zero"}
        assert out["walls"][name] == pytest.approx(sum(m["wall_s"] for m in stages), abs=0.1)
    assert len(out["audit"]["right_by_prompt"]["base"]) == len(out["audit"]["base"]["task"]["checked_by_prompt"])
    result = gather([arms.BY_NAME["reach"], arms.BY_NAME["format_off"]], tmp_path)
    assert [r["verdict"] in ("confirmed", "refuted", "inconclusive") for r in result["arms"]] == [True, True]
    assert "| reach |" in table(result) and all(r["over_seeds"] for r in result["arms"])
