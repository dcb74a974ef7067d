"""The one verdict over a completion (rewards/verdict.py) that the cold start, rejection sampling,
the evaluation, the GRPO monitors and the base's report all read, and its filter: table-driven on
hand-made completions, with and without a chat template that pre-fills `<think>`."""

from __future__ import annotations

import pytest

from core.config import RejectionSamplingConfig
from core.generation import Completion
from rewards.completions import think_prefilled
from rewards.extract import think_text
from rewards.language import language_share
from rewards.monitors import monitors
from rewards.verdict import REASONS, Keep, judge, rejection, repeats, select
from stages.rejection_sampling import keep_rules

ROW = {"prompt": "4 + 5 - 2 =", "answer": "7", "task": "chain_sum", "metadata": "{}"}
EN = "i start from 4 + 5 - 2 . then 9 - 2 . then 7 ."
FR = "je commence par 4 + 5 - 2 . puis 9 - 2 . puis 7 ."
STRICT = Keep(correct=True, well_formed=True, language_threshold=1.0, no_repeats=True, max_tokens=40)


@pytest.mark.parametrize(("text", "fields"), [
    (f"<think> {EN} </think> <answer> 7 </answer>",
     {"answer": "7", "correct": True, "well_formed": True, "think": EN, "language_share": 1.0, "repeats": False,
      "wrote_work": True, "reflected": False}),
    (f"<think> {FR} </think> <answer> 8 </answer>",
     {"answer": "8", "correct": False, "well_formed": True, "think": FR, "language_share": 0.0}),
    ("<answer> 7 </answer>", {"answer": "7", "correct": True, "well_formed": False, "think": "", "wrote_work": False}),
    ("<think> so 7 . wait , check it . </think> 7", {"answer": "7", "reflected": True, "reflection_words": 2,
                                                     "wrote_work": True}),
    (f"<think> {EN}", {"answer": None, "correct": False, "well_formed": False}),  # still thinking
])
def test_judge_reads_each_part(text, fields):
    v = judge(text, ROW)
    assert {k: getattr(v, k) for k in fields} == fields


def test_without_a_row_correctness_is_unknown():
    assert judge("<think> x </think> 7").correct is None


def test_repeats_finds_loops_not_short_lines():
    assert repeats("then 9 - 2 . then 9 - 2 . done .")
    assert not repeats("then 9 . then 9 . so the answer is 9 .")  # lines under three words
    assert repeats("line one here\nother\nline one here")


# One completion per rule, each removed for exactly its reason by the strict rules.
CASES = {
    "overlong": Completion(f"<think> {EN} </think> <answer> 7 </answer>", 41, True),
    "incorrect": Completion(f"<think> {EN} </think> <answer> 8 </answer>", 20, True),
    "format": Completion("<answer> 7 </answer>", 5, True),
    "mixed_language": Completion(f"<think> {FR} </think> <answer> 7 </answer>", 20, True),
    "repeated_lines": Completion("<think> i start from 4 + 5 - 2 . then 9 - 2 . then 9 - 2 . then 7 . </think> "
                                 "<answer> 7 </answer>", 25, True),
}


@pytest.mark.parametrize("reason", list(CASES))
def test_each_rule_removes_its_case_and_only_when_enabled(reason):
    c = CASES[reason]
    v = judge(c.text, ROW, finished=c.finished, num_tokens=c.num_tokens)
    assert rejection(v, STRICT) == reason
    assert rejection(v, Keep()) is None  # every rule off: a finished completion passes
    assert reason in REASONS


def test_select_dedupes_caps_and_counts_everything():
    good = Completion(f"<think> {EN} </think> <answer> 7 </answer>", 20, True)
    spaced = Completion(f"  <think> {EN}  </think>\n<answer> 7 </answer> ", 21, True)
    other = Completion(f"<think> {EN} . so 7 </think> <answer> 7 </answer>", 22, True)
    samples = [[*CASES.values(), good, spaced, other]]
    kept, removed = select([ROW], samples, Keep(correct=True, well_formed=True, language_threshold=1.0,
                                                 no_repeats=True, max_tokens=40, per_prompt=1), "en", [False])
    assert [text for _, text in kept] == [good.text]
    assert removed == {**{r: 1 for r in CASES}, "duplicate": 1, "per_prompt": 1}
    assert len(kept) + sum(removed.values()) == len(samples[0])


# A template that pre-fills `<think>` (R1-Distill's): the completion starts inside the thinking.
PREFILLED_PROMPT = "<|im_start|>user\n4 + 5 - 2 =<|im_end|>\n<|im_start|>assistant\n<think>\n"


def test_prefilled_thinking_is_read_as_thinking():
    assert think_prefilled(PREFILLED_PROMPT)
    v = judge(f"{FR} </think> <answer> 7 </answer>", ROW, think_prefilled=True)
    assert (v.think, v.answer, v.correct, v.well_formed, v.language_share) == (FR, "7", True, True, 0.0)


def test_rejection_sampling_drops_mixed_language_thinking_behind_a_prefilled_think():
    """The latent bug: rejection sampling read the thinking without the pre-filled `<think>`, found
    none, and the language filter (share of no words = 1.0) passed every sample."""
    french = Completion(f"{FR} </think> <answer> 7 </answer>", 20, True)
    english = Completion(f"{EN} </think> <answer> 7 </answer>", 20, True)
    rules = keep_rules(RejectionSamplingConfig(language_threshold=1.0))
    kept, removed = select([ROW], [[french, english]], rules, "en", [think_prefilled(PREFILLED_PROMPT)])
    assert [text for _, text in kept] == [english.text] and removed == {"mixed_language": 1}
    # the old reading: no thinking found without the pre-fill, and a share of no words is 1.0
    assert think_text(french.text) == "" and language_share(think_text(french.text), "en") == 1.0


def test_the_monitors_read_the_same_verdict():
    texts = [f"<think> {EN} wait , check . </think> 7", "<think> i know it </think> 7", "7"]
    logged = {m.__name__: m(texts) for m in monitors()}
    assert logged["wrote_steps"] == [1.0, 0.0, 0.0]
    assert logged["reflected"] == [1.0, 0.0, 0.0]
    assert logged["reflection_words"] == [2.0, 0.0, 0.0]
    # behind a pre-filled `<think>` the thinking is the text before `</think>`
    prompts = [PREFILLED_PROMPT] * 2
    by_name = {m.__name__: m for m in monitors()}
    assert by_name["wrote_steps"]([f"{EN} </think> 7", "i know </think> 7"], prompts=prompts) == [1.0, 0.0]
