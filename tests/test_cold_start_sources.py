"""The cold-start sources (issue: cold start the paper's way): the filters and the rewrite on
hand-made completions, the graph's conditional R1-Zero input, and each collected source through the
real sampler at test size."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import TEST_RECIPE

import pocket
from core.config import ColdStartConfig, CollectConfig, RecipeError, TemplateConfig, load_recipe
from core.generation import Completion
from data.cold_start import REMOVED, collect, few_shot_messages, readable
from rewards.verdict import judge
from stages import graph, runner

TEMPLATE = TemplateConfig(system=None, instruction="{prompt}")
ROW = {"prompt": "State the final answer to the following arithmetic problem: 4 + 5 - 2 =", "answer": "7",
       "task": "chain_sum", "metadata": json.dumps({"expression": "4 + 5 - 2"})}
GOOD = "<think> i start from 4 + 5 - 2 . then 9 - 2 . then 7 . </think> <answer> 7 </answer>"

# One completion per reason a collected completion is removed, in the order the filters run.
CASES = {
    "overlong": Completion(GOOD, 90, False),
    "incorrect": Completion(GOOD.replace("<answer> 7", "<answer> 8"), 20, True),
    "format": Completion("<answer> 7 </answer>", 5, True),  # right, but no reasoning
    "mixed_language": Completion("<think> je commence par 4 + 5 - 2 . puis 9 - 2 . puis 7 . </think> <answer> 7 </answer>",
                                 20, True),
    "repeated_lines": Completion("<think> i start from 4 + 5 - 2 . then 9 - 2 . then 9 - 2 . then 7 . </think> "
                                 "<answer> 7 </answer>", 25, True),
}


def collected(completions, cfg=None, rows=(ROW,)):
    """What the cold start's collection keeps of `completions` (each row's), and what it removed."""
    return collect(list(rows), [completions] * len(rows), cfg or CollectConfig(), 100, "en", TEMPLATE, 0, "r1_zero",
                   [False] * len(rows))


@pytest.mark.parametrize("reason", list(CASES))
def test_each_filter_removes_its_case(reason):
    kept, removed = collected([CASES[reason]])
    assert not kept and +removed == {reason: 1}


def test_a_verified_readable_completion_passes():
    assert len(collected([Completion(GOOD, 20, True)])[0]) == 1
    assert collected([Completion(GOOD, 20, True)], CollectConfig(max_tokens=10))[1] == Counter(overlong=1)


def test_readable_adds_the_summary_once():
    summary = "so the answer is {answer} ."
    once = readable(judge(GOOD), summary)
    assert once == ("<think> i start from 4 + 5 - 2 . then 9 - 2 . then 7 . so the answer is 7 . </think> "
                    "<answer> 7 </answer>")
    assert readable(judge(once), summary) == once
    # text around the blocks is dropped; a plain answer gets its tags
    assert readable(judge("<think> a b c . </think> so 7 <answer>7</answer>"), summary) == \
        "<think> a b c . so the answer is 7 . </think> <answer> 7 </answer>"


def test_collect_counts_add_up_and_keeps_only_clean_rows():
    rows = [ROW, dict(ROW, prompt=ROW["prompt"].replace("4 +", "3 +"), answer="6",
                      metadata=json.dumps({"expression": "3 + 5 - 2"}))]
    second_good = GOOD.replace("4 +", "3 +").replace("9 -", "8 -").replace(" 7 ", " 6 ")
    samples = [[*CASES.values(), Completion(GOOD, 20, True), Completion(GOOD + " ", 21, True),
                Completion(GOOD.replace("then 9 - 2", "then 9  - 2 . so 7"), 24, True)],
               [Completion(second_good, 20, True)]]
    kept, removed = collect(rows, samples, CollectConfig(per_prompt=1), 1, "en", TEMPLATE, 0, "r1_zero", [False] * 2)
    assert set(removed) <= set(REMOVED)
    assert len(kept) + sum(removed.values()) == sum(len(s) for s in samples)
    assert removed["duplicate"] == 1 and removed["per_prompt"] == 1 and removed["over_cap"] == 1
    assert all(removed[r] == 1 for r in CASES)
    (row,) = kept
    text = row["completion"][0]["content"]
    assert text.endswith("</answer>") and " so the answer is " in text
    assert row["source"] == "r1_zero" and row["answer"] in {"6", "7"} and row["task"] == "chain_sum"


def test_few_shot_conversation_puts_exemplars_first():
    turns = few_shot_messages("Q?", pocket.exemplars(), TemplateConfig(system="be brief", instruction="{prompt}"))
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert turns[-1]["content"] == "Q?" and "check :" in turns[2]["content"]
    for ex in pocket.exemplars():  # the built-in exemplars are right and pass the filters themselves
        row = dict(ROW, prompt=ex.prompt, answer=ex.completion.split("<answer>")[1].split("</answer>")[0].strip())
        assert len(collected([Completion(ex.completion, 60, True)], rows=[row])[0]) == 1


def test_source_defaults_and_errors():
    assert ColdStartConfig().source == "generated"
    assert ColdStartConfig(dataset="cs.jsonl").source == "file"
    with pytest.raises(ValueError, match="source: file needs `dataset`"):
        ColdStartConfig(source="file")
    with pytest.raises(ValueError, match="dataset is read only with source: file"):
        ColdStartConfig(source="r1_zero", dataset="cs.jsonl")


def test_the_r1_zero_input_only_when_collected_from_this_run(test_recipe):
    names = lambda recipe: [s.name for s in graph.needed(["cold_start"], recipe)]  # noqa: E731
    assert "r1_zero" not in names(test_recipe)
    with_r1_zero = test_recipe.model_copy(update={"cold_start": ColdStartConfig(source="r1_zero")})
    assert names(with_r1_zero).index("r1_zero") < names(with_r1_zero).index("cold_start_data")
    given = ColdStartConfig(source="r1_zero", collect=CollectConfig(r1_zero_run="another-run"))
    assert "r1_zero" not in names(test_recipe.model_copy(update={"cold_start": given}))


def test_a_missing_r1_zero_run_is_named(pocket_run, test_recipe):
    store, _, task_data, base = pocket_run
    recipe = load_recipe(TEST_RECIPE, ["cold_start.source=r1_zero", "cold_start.collect.r1_zero_run=nope"])
    with pytest.raises(ValueError, match="r1_zero_run: run 'nope' has no finished r1_zero stage"):
        runner.build(["cold_start_data"], recipe, store, store.new_run_id("missing"),
                    {"task_data": task_data, "base": base})


def test_real_recipes_need_no_file():
    for name in ("qwen2.5-0.5b-instruct-gsm8k", "qwen2.5-1.5b-math"):
        recipe = load_recipe(f"configs/{name}.yaml")
        assert recipe.cold_start.source in {"r1_zero", "few_shot"}, name


def test_recipe_error_names_the_source_key(tmp_path):
    with pytest.raises(RecipeError, match="cold_start.source"):
        load_recipe(TEST_RECIPE, ["cold_start.source=web"])


# The test base was pretrained on 128-token blocks: one short exemplar leaves room for the question and the
# work (the pocket's own exemplars end with a finer check; with them 376 of 384 samples ran over 48 tokens).
SHORT_EXEMPLAR = ('cold_start.collect.exemplars=[{prompt: "State the final answer to the following arithmetic '
                  'problem: 2 + 3 =", completion: "<think> i start from 2 + 3 . then 5 . so the answer is 5 . '
                  '</think> <answer> 5 </answer>"}]')


@pytest.mark.slow
@pytest.mark.parametrize("source", ["r1_zero", "few_shot"])
def test_collected_source_through_the_sampler(pocket_run, source):
    """Each collected source builds a cold-start set with the real sampler: the manifest's counts add
    up, every kept row re-verifies against its gold answer and is in the readable format; the cold
    start then trains on it."""
    from data.saved import load_sft_dataset
    from rewards.accuracy import is_correct
    from rewards.extract import extract_answer
    from rewards.format import well_formed

    store, _, task_data, base = pocket_run
    overrides = [f"cold_start.source={source}", "cold_start.collect.prompts=48", "cold_start.collect.max_new_tokens=48",
                 "cold_start.collect.language_threshold=0.5", "cold_start.collect.samples_per_prompt=4"]
    if source == "few_shot":
        overrides.append(SHORT_EXEMPLAR)
    recipe = load_recipe(TEST_RECIPE, overrides)
    run_id = store.new_run_id(f"cold-{source}")
    refs = runner.build(["cold_start"], recipe, store, run_id, {"task_data": task_data, "base": base})
    metrics = store.manifest(run_id, "cold_start_data")["metrics"]
    kept = load_sft_dataset(refs["cold_start_data"])
    assert metrics["source"] == source and metrics["examples"] == len(kept) > 0
    assert metrics["sampled"] == 48 * 4 == len(kept) + sum(metrics[f"removed_{r}"] for r in REMOVED)
    for row in kept:
        text = row["completion"][0]["content"]
        assert well_formed(text) and is_correct(extract_answer(text), row), text
    assert store.manifest(run_id, "cold_start")["metrics"]["examples"] == len(kept)


SAMPLING_SCRIPT = """
import sys
from core.config import load_recipe
from core.runstore import RunStore
from stages import runner
recipe = load_recipe(sys.argv[1], sys.argv[4:])
runner.build(["cold_start_data"], recipe, RunStore(sys.argv[2]), sys.argv[3])
"""


@pytest.mark.slow
def test_killed_mid_sampling_leaves_nothing_and_resumes(pocket_run, tmp_path):
    """SIGKILL while the cold start is being sampled: no stage directory that looks finished, and the
    same run id then builds it."""
    import os
    import subprocess
    import sys
    import time

    store = pocket_run[0]
    run_id = store.new_run_id("cold-killed")
    args = [sys.executable, "-c", SAMPLING_SCRIPT, str(TEST_RECIPE), str(store.root), run_id,
            "cold_start.source=few_shot", "cold_start.collect.prompts=96", "cold_start.collect.max_new_tokens=48",
            SHORT_EXEMPLAR]
    log = tmp_path / "sampling.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=TEST_RECIPE.parent.parent, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 600
    while "collecting the cold start" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "sampling never started"
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert store.manifest(run_id, "cold_start_data") is None
    finished = subprocess.run(args, cwd=TEST_RECIPE.parent.parent,
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    manifest = store.manifest(run_id, "cold_start_data")
    assert manifest is not None and store.verify(manifest) == []
