"""The evaluator: pass@1 and cons@k on hand-made samples (ties included), held-out prompts only,
and an end-to-end evaluation of the test-size pocket base."""

import json
from pathlib import Path

import pytest

from data.saved import load_split
from rewards.completions import prompt_key
from rewards.verdict import Verdict
from stages import runner
from stages.evaluation import (
    COLUMNS,
    cons_at_k,
    eval_rows,
    format_table,
    majority_answer,
    pass_at_1,
    summarize,
)

ROOT = Path(__file__).resolve().parent.parent
GOLD = {"answer": "7", "task": None, "metadata": "{}"}


def s(answer, correct=None, tokens=10, lang=1.0, refl=0):
    return Verdict(text="", answer=answer, correct=answer == "7" if correct is None else correct, finished=True,
                   num_tokens=tokens, think_prefilled=False, well_formed=True, think="", language_share=lang,
                   repeats=False, reflection_words=refl)


@pytest.mark.parametrize(
    ("answers", "p1", "majority", "cons"),
    [
        (["7", "7", "7", "7"], 1.0, "7", True),
        (["7", "3", "3", "4"], 0.25, "3", False),          # plurality wrong although one sample right
        (["3", "7", "7", "4"], 0.5, "7", True),
        (["3", "7", "7", "3"], 0.5, "3", False),           # tie 2-2: the answer reached first wins
        (["7", "3", "3", "7"], 0.5, "7", True),            # the same tie, other order
        ([None, None, "7", "3"], 0.25, "7", True),         # no answer does not vote; 1-1 tie -> first
        ([None, None, None, None], 0.0, None, False),
        ([" 7 ", "7.", "3", "3"], 0.0, "7", True),         # answers vote after normalisation
    ],
)
def test_pass_at_1_and_majority_vote(answers, p1, majority, cons):
    samples = [s(a, correct=a == "7") for a in answers]
    assert pass_at_1(samples) == p1
    assert majority_answer(samples) == majority
    assert cons_at_k(samples, GOLD) is cons


def test_summary_per_task_and_overall():
    rows = [dict(GOLD, task="a"), dict(GOLD, task="a"), dict(GOLD, task="b")]
    sampled = [[s("7"), s("3")], [s("3", tokens=20), s("3", tokens=20)], [s("7", lang=0.5, refl=2), s("7")]]
    greedy = [s("3"), s("3"), s("7")]  # not the first samples: greedy accuracy must come from greedy
    out = summarize(rows, sampled, greedy)
    assert out["overall"]["pass_at_1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert out["overall"]["cons_at_k"] == pytest.approx(2 / 3)          # row 1: tie 7/3 -> 7 (first)
    assert out["overall"]["greedy_accuracy"] == pytest.approx(1 / 3)
    assert out["per_task"]["a"]["pass_at_1"] == 0.25 and out["per_task"]["b"]["pass_at_1"] == 1.0
    assert out["per_task"]["a"]["mean_length"] == 15.0
    assert out["per_task"]["b"]["language_consistency"] == 0.75 and out["per_task"]["b"]["reflection_words"] == 1.0
    assert out["k"] == 2
    table = format_table({"base": out})
    assert "| base | 0.500 | 0.667 | 0.333 |" in table and "cons@2" in table
    mixed = format_table({"base": out, "sft": {**out, "k": 4}})  # eval.stage_samples: k per stage
    assert "| cons@k |" in mixed and "| base | 0.500 | 0.667 (k=2) |" in mixed and "0.667 (k=4)" in mixed


def test_summary_splits_accuracy_by_reflection_and_length_by_correctness():
    rows = [GOLD, GOLD]
    sampled = [[s("7", tokens=40, refl=1), s("3", tokens=10)], [s("7", tokens=30, refl=2), s("3", tokens=20, refl=1)]]
    o = summarize(rows, sampled, [s("7"), s("3")])["overall"]
    assert o["reflection_rate"] == 0.75
    assert o["accuracy_reflected"] == pytest.approx(2 / 3) and o["accuracy_unreflected"] == 0.0
    assert o["mean_length_correct"] == 35.0 and o["mean_length_incorrect"] == 15.0
    none_reflect = summarize([GOLD], [[s("7"), s("7")]], [s("7")])["overall"]
    assert none_reflect["accuracy_reflected"] is None and none_reflect["mean_length_incorrect"] is None
    assert none_reflect["accuracy_unreflected"] == 1.0


@pytest.fixture(scope="module")
def base_eval(own_run, test_recipe):
    store, run_id, refs = own_run("eval")
    ref = runner.build(["eval_base"], test_recipe, store, run_id, refs)["eval_base"]
    return store, run_id, refs["task_data"], ref


def test_end_to_end_eval_of_the_pocket_base_writes_every_field(base_eval, test_recipe):
    store, run_id, _, ref = base_eval
    results = json.loads((Path(ref.path) / "eval.json").read_text())
    for scope in [results["overall"], *results["per_task"].values()]:
        for key in COLUMNS:
            assert isinstance(scope[key], float) and scope[key] >= 0
        assert 0 <= scope["pass_at_1"] <= 1 and 0 <= scope["language_consistency"] <= 1
    assert results["k"] == test_recipe.eval.samples
    assert results["overall"]["prompts"] == test_recipe.eval.prompts
    assert results["overall"]["mean_length"] > 0
    assert store.manifest(run_id, "eval_base")["metrics"] == results["overall"]
    assert results["split"] == "test"
    for split in ("transfer", "longer"):  # the stress splits, evaluated apart
        assert results[split]["prompts"] == test_recipe.eval.stress_prompts
        assert 0 <= results[split]["pass_at_1"] <= 1


def test_stress_stages_limits_the_stress_splits_to_the_stages_named(pocket_run, test_recipe):
    """The evaluation's code path: named -> the stress splits; not named -> no stress figures at all
    (bench/paper.py evaluates them only for the models its table reports)."""
    from stages.evaluation import evaluate

    _, _, task_data_ref, base_ref = pocket_run
    cfg = test_recipe.eval.model_copy(update={"prompts": 4, "stress_prompts": 4, "samples": 1})
    kept = evaluate(test_recipe, cfg.model_copy(update={"stress_stages": ["base"]}), task_data_ref, base_ref, None,
                    "base")
    assert kept["transfer"]["prompts"] == kept["longer"]["prompts"] == 4
    skipped = evaluate(test_recipe, cfg.model_copy(update={"stress_stages": ["r1_zero"]}), task_data_ref, base_ref,
                       None, "base")
    assert "transfer" not in skipped and "longer" not in skipped and skipped["overall"]["prompts"] == 4


def test_stage_samples_sets_k_for_the_stages_named(pocket_run, test_recipe):
    from stages.evaluation import evaluate

    _, _, task_data_ref, base_ref = pocket_run
    cfg = test_recipe.eval.model_copy(update={"prompts": 3, "stress_prompts": 2, "samples": 2})
    named = evaluate(test_recipe, cfg.model_copy(update={"stage_samples": {"base": 3}}), task_data_ref, base_ref,
                     None, "base")
    other = evaluate(test_recipe, cfg.model_copy(update={"stage_samples": {"sft": 3}}), task_data_ref, base_ref,
                     None, "base")
    assert (named["k"], other["k"]) == (3, 2)


def test_saved_samples_are_the_ones_scored(base_eval, test_recipe):
    """samples-<split>.jsonl holds every completion the evaluation scored: scoring them again gives
    eval.json's per-prompt pass@1 on each split, and load_samples refuses rows they were not drawn for."""
    from stages.evaluation import load_samples, score_sample

    _, _, task_data_ref, ref = base_eval
    results = json.loads((Path(ref.path) / "eval.json").read_text())
    for split, figures in (("test", results), ("transfer", {"overall": results["transfer"]}),
                           ("longer", {"overall": results["longer"]})):
        rows = eval_rows(test_recipe.eval, task_data_ref, split)
        sampled = load_samples(ref, rows, split)
        assert [len(c) for c in sampled] == [test_recipe.eval.samples] * len(rows)
        scored = [[score_sample(c, r, test_recipe.data.language) for c in cs] for r, cs in zip(rows, sampled, strict=True)]
        assert sum(map(pass_at_1, scored)) / len(rows) == pytest.approx(figures["overall"]["pass_at_1"])
        if split == "test":
            assert [pass_at_1(x) for x in scored] == pytest.approx(results["pass_at_1_by_prompt"])
        line = json.loads((Path(ref.path) / f"samples-{split}.jsonl").read_text().splitlines()[0])
        assert line["prompt"] == rows[0]["prompt"] and set(line["greedy"]) == {"text", "num_tokens", "finished"}
    with pytest.raises(ValueError, match="not the 2 test rows asked for"):
        load_samples(ref, list(reversed(eval_rows(test_recipe.eval, task_data_ref)))[:2])


def test_end_to_end_eval_agrees_with_scoring_the_model_by_hand(base_eval, pocket_run, test_recipe):
    """Greedy accuracy recomputed outside the evaluator (its own generation and the one definition of
    correct), and pass@1 the mean of the per-prompt figures it reports."""
    from core.generation import generate
    from core.modeling import inference_model, load_tokenizer
    from data.chat import messages, render
    from rewards.accuracy import is_correct
    from rewards.extract import extract_answer

    _, _, task_data_ref, ref = base_eval
    base = pocket_run[3].path
    results = json.loads((Path(ref.path) / "eval.json").read_text())
    rows = eval_rows(test_recipe.eval, task_data_ref)
    tok = load_tokenizer(base)
    outs = generate(inference_model(base), tok, [render(tok, messages(r["prompt"], test_recipe.data.template))
                                                 for r in rows], max_new_tokens=test_recipe.eval.max_new_tokens,
                    batch_size=test_recipe.eval.batch_size)
    right = [is_correct(extract_answer(c.text), r) for (c,), r in zip(outs, rows, strict=True)]
    assert results["overall"]["greedy_accuracy"] == pytest.approx(sum(right) / len(rows))
    assert [e["greedy"] for e in results["examples"]] == [c.text for (c,) in outs[: len(results["examples"])]]
    by_prompt = results["pass_at_1_by_prompt"]
    assert len(by_prompt) == len(rows) and all(p in {i / results["k"] for i in range(results["k"] + 1)}
                                               for p in by_prompt)
    assert results["overall"]["pass_at_1"] == pytest.approx(sum(by_prompt) / len(by_prompt))


def test_stress_items_are_longer_and_never_in_training(pocket_run, test_recipe):
    _, _, task_data_ref, _ = pocket_run
    seen = {prompt_key(p) for part in ("train", "validation", "test") for p in load_split(task_data_ref, part)["prompt"]}
    for split, terms in (("transfer", 5), ("longer", 6)):  # training chains have 2-4 terms
        rows = list(load_split(task_data_ref, split))
        assert rows and not {prompt_key(r["prompt"]) for r in rows} & seen
        assert all(json.loads(r["metadata"])["num_terms"] == terms for r in rows)


def test_evaluator_sees_only_test_prompts(base_eval):
    _, _, task_data_ref, ref = base_eval
    test = {prompt_key(p) for p in load_split(task_data_ref, "test")["prompt"]}
    results = json.loads((Path(ref.path) / "eval.json").read_text())
    evaluated = {prompt_key(e["prompt"]) for e in results["examples"]}
    assert evaluated <= test
    for other in ("train", "validation"):
        assert not evaluated & {prompt_key(p) for p in load_split(task_data_ref, other)["prompt"]}


def test_every_evaluated_row_is_a_test_row(pocket_run, test_recipe):
    _, _, task_data_ref, _ = pocket_run
    rows = eval_rows(test_recipe.eval, task_data_ref)
    assert len(rows) == test_recipe.eval.prompts
    test = {prompt_key(p) for p in load_split(task_data_ref, "test")["prompt"]}
    assert {prompt_key(r["prompt"]) for r in rows} <= test


def test_cli_evaluates_a_model_directory_and_an_adapter(pocket_run, monkeypatch, capsys, tmp_path):
    """`r1 evaluate` on any model directory (here the pocket base) and on a PEFT adapter directory."""
    from shell.cli import main

    store, _, _, base_ref = pocket_run
    monkeypatch.setenv("R1_RUNS_DIR", str(store.root))
    assert main(["evaluate", "--recipe", "pocket-test", "--model", base_ref.path, "--run-id", "cli-eval"]) == 0
    assert "| model |" in capsys.readouterr().out
    assert (store.root / "cli-eval" / "eval_model" / "eval.json").is_file()
    assert main(["evaluate", "--recipe", "pocket-test", "--adapter", str(tmp_path), "--run-id", "cli-eval"]) == 2
    assert "not a PEFT adapter directory" in capsys.readouterr().err


def test_a_recipe_without_stress_splits_evaluates(pocket_run, monkeypatch, capsys):
    """Both real recipes have no stress split. The task data used to save an empty split that
    `datasets` cannot read back, and every evaluation drew all its samples, then crashed loading it
    (IndexError) and kept nothing. Now an empty split is never saved nor loaded, in the evaluation
    stage and in `r1 evaluate` alike."""
    from core.config import load_recipe
    from data.saved import has_split
    from shell.cli import main
    from stages.evaluation import load_results

    store, _, _, base_ref = pocket_run
    overrides = ["data.transfer=[]", "data.longer=[]", "eval.prompts=4", "eval.samples=1"]
    recipe = load_recipe(ROOT / "configs" / "pocket-test.yaml", overrides)
    refs = runner.build(["eval_base"], recipe, store, store.new_run_id("no-stress"))
    assert not has_split(refs["task_data"], "transfer") and not has_split(refs["task_data"], "longer")
    results = load_results(refs["eval_base"])
    assert results["overall"]["prompts"] == 4 and "transfer" not in results and "longer" not in results
    monkeypatch.setenv("R1_RUNS_DIR", str(store.root))
    args = ["evaluate", "--recipe", "pocket-test", "--model", base_ref.path, "--run-id", "cli-no-stress"]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    assert "| model |" in capsys.readouterr().out
