"""The committed paper table is what the bench makes of the committed seed files, and the README
quotes it: a seed re-run without a gather, or a number edited by hand, fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import paper
from pocket import analysis, world

ROOT = Path(__file__).resolve().parents[1]
TABLE = paper.RESULTS / "paper_table.json"


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads(TABLE.read_text())


def readme_rows(heading: str, first_cell: str) -> dict[str, list[str]]:
    """The cells of the first markdown table after `heading` whose header starts with `first_cell`,
    keyed by each row's first cell."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    match = re.search(rf"^\| {first_cell} \|.*\n\|[-:| ]+\|\n((?:\|.*\|\n)+)", section, re.M)
    assert match, f"README: no table starting '| {first_cell} |' after {heading!r}"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in match.group(1).splitlines()]
    return {r[0]: r[1:] for r in rows}


def test_committed_table_is_gathered_from_the_committed_seed_files(table):
    assert paper.gather() == table


def test_readme_quotes_the_committed_table(table):
    quoted = readme_rows("### The paper's findings", "model")
    assert set(quoted) == set(table["rows"])
    for model, r in table["rows"].items():
        lo, hi = r["pass_at_1_ci"]
        assert quoted[model] == [f"{r['pass_at_1']:.3f}", f"[{lo:.3f}, {hi:.3f}]", f"{r['cons_at_16']:.3f}",
                                 f"{r['mean_length']:.1f}", f"{r['language_consistency']:.3f}",
                                 f"{r['reflection_rate']:.3f}"], model


def test_readme_quotes_every_seed_of_the_committed_table(table):
    quoted = readme_rows("### The paper's findings", "seed")
    assert set(quoted) == set(table["by_seed"])
    for seed, s in table["by_seed"].items():
        rows, p = s["rows"], s["pipeline"]
        assert quoted[seed] == [
            f"{rows['base']['pass_at_1']:.3f}", f"{rows['r1_zero']['pass_at_1']:.3f}", f"{rows['r1']['pass_at_1']:.3f}",
            f"{rows['student_distilled']['pass_at_1']:.3f} / {rows['student_rl']['pass_at_1']:.3f}",
            " -> ".join(f"{p[stage]:.3f}" for stage in paper.PIPELINE),
            *(" / ".join(f"{s[split][m]:.3f}" for m in paper.STRESS_ROWS) for split in ("transfer", "longer")),
        ], f"seed {seed}"


def test_the_table_has_what_the_findings_rest_on(table):
    """Every seed's splits (sizes), its base's styles at step 0, the within-prompt check difference
    target 4 is judged on, and the distillation sweep."""
    for s in table["by_seed"].values():
        assert set(s["splits"]) == {"train", "validation", "test", "transfer", "longer"}
        assert all(s["splits"][split] > 0 for split in s["splits"])
        assert set(s["base_styles"]["task"]) >= set(world.ANSWER_STYLES)
        assert set(s["checks_within_prompt"]) == {"diff", "ci"}
        assert set(s["transfer"]) == set(s["longer"]) == set(paper.STRESS_ROWS)
    assert len(table["distill_sweep"]) >= 4
    assert all({"size", "distilled", "rl"} <= set(r) for r in table["distill_sweep"])


@pytest.mark.parametrize(("work", "given", "outcome"), [
    ("5", "5", "confirmed"),  # right work, the check agrees
    ("4", "5", "caught"),  # a slip, repaired by the check
    ("4", "4", "missed"),  # a slip the check repeats
    ("5", "6", "broke"),  # right work, "repaired" into a wrong answer
])
def test_check_outcome_compares_the_work_with_the_answer_given(work, given, outcome):
    text = (f"<think> i start from 2 + 3 . then {work} . check : 2 + 3 = {given} . wait , not {work} . "
            f"it is {given} . so the answer is {given} . </think> <answer> {given} </answer>")
    assert analysis.check_outcome(text, "5") == outcome


def test_a_response_without_a_written_check_has_no_outcome():
    assert analysis.check_outcome("<think> i start from 2 + 3 . then 5 . </think> <answer> 5 </answer>", "5") is None


CHAIN = [4, -1, -7, 7]


@pytest.mark.parametrize(("text", "expected"), [
    # right copy, right reductions, a check that copies the prompt's chain again
    ("<think> i start from 4 - 1 - 7 + 7 . then 3 - 7 + 7 . then -4 + 7 . then 3 . check : 4 - 1 - 7 + 7 = 3 - 7 + 7 "
     "= -4 + 7 = 3 . same , 3 . so the answer is 3 . </think> <answer> 3 </answer>",
     {"copied": True, "reduced": True, "check_from": "prompt"}),
    # a term dropped in the first line; the reductions of that line are right; the check copies the bad line
    ("<think> i start from 4 - 1 + 7 . then 3 + 7 . then 10 . check : 4 - 1 + 7 = 3 + 7 = 10 . same , 10 . "
     "so the answer is 10 . </think> <answer> 10 </answer>",
     {"copied": False, "reduced": True, "check_from": "work"}),
    # the finer check (pocket.world.check_work): the prompt's chain, then each sum beside its two terms
    ("<think> i start from 4 - 1 - 7 + 7 . then 3 - 7 + 7 . then -4 + 7 . then 4 . "
     f"{world.check_text(CHAIN, 4)} </think> <answer> 3 </answer>",
     {"copied": True, "reduced": False, "check_from": "prompt"}),
    # the finer check started from the work's miscopied first line
    ("<think> i start from 4 - 1 + 7 . then 3 + 7 . then 10 . check : 4 - 1 + 7 . 4 - 1 = 3 , 3 + 7 . 3 + 7 = 10 . "
     "same , 10 . so the answer is 10 . </think> <answer> 10 </answer>",
     {"copied": False, "reduced": True, "check_from": "work"}),
    # a slip in the second reduction, written in French, no check
    ("<think> je commence par 4 - 1 - 7 + 7 . puis 3 - 7 + 7 . puis -5 + 7 . puis 2 . donc la réponse est 2 . "
     "</think> <answer> 2 </answer>",
     {"copied": True, "reduced": False, "check_from": None}),
    # a miscopied term carried on (not a reduction of the line before)
    ("<think> i start from 4 - 1 - 7 + 7 . then 3 - 6 + 7 . then -3 + 7 . then 4 . </think> <answer> 4 </answer>",
     {"copied": True, "reduced": False, "check_from": None}),
])
def test_work_anatomy_finds_where_the_work_went_wrong(text, expected):
    assert analysis.work_anatomy(text, CHAIN) == expected


def test_a_direct_answer_has_no_work_anatomy():
    assert analysis.work_anatomy("<answer> 3 </answer>", CHAIN) is None


def test_tally_anatomy_counts_responses_by_where_they_went():
    from core.generation import Completion

    row = {"prompt": "State the final answer to the following arithmetic problem: 4 - 1 - 7 + 7 =", "answer": "3",
           "task": "chain_sum", "metadata": json.dumps({"expression": "4 - 1 - 7 + 7"})}
    texts = ["<answer> 3 </answer>",
             "<think> i start from 4 - 1 - 7 + 7 . then 3 - 7 + 7 . then -4 + 7 . then 3 . </think> <answer> 3 </answer>",
             "<think> i start from 4 - 1 + 7 . then 3 + 7 . then 10 . check : 4 - 1 + 7 = 3 + 7 = 10 . same , 10 . "
             "</think> <answer> 10 </answer>"]
    counts = analysis.tally_anatomy([row], [[Completion(t, 10, True) for t in texts]], "en")
    assert counts == {"responses": 3, "written": 2, "copied": 1, "clean": 1, "clean_right": 1, "checked": 1,
                      "check_from_prompt": 0, "check_from_work": 1, "check_from_other": 0}


def test_the_bench_analyses_read_the_samples_the_evaluations_saved(trained_run, side_flows, test_recipe):
    """r1_anatomy and checks_within_prompts work on the samples R1's and R1-Zero's evaluations drew
    and saved: every sample counted once, and the pooled with/without-check accuracies equal eval.json's."""
    from stages.evaluation import eval_rows, load_results, stage_name

    store, run_id, _ = trained_run
    task_data, k = store.ref(run_id, "task_data"), test_recipe.eval.samples
    anatomy = paper.r1_anatomy(test_recipe, store, run_id)
    for split in ("test", "transfer", "longer"):
        assert anatomy[split]["responses"] == k * len(eval_rows(test_recipe.eval, task_data, split))
    within = paper.checks_within_prompts(test_recipe, store, run_id)
    zero = load_results(store.ref(run_id, stage_name(paper.paper_rows()["r1_zero"])))["overall"]
    assert within["prompts"] == zero["prompts"]
    assert (within["pooled_with"], within["pooled_without"]) == pytest.approx(
        (zero["accuracy_reflected"], zero["accuracy_unreflected"]))
