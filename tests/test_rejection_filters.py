"""The rejection-sampling filters (stages/rejection_sampling.py: the recipe's rules over the one
verdict, rewards/verdict.py), table-driven: one completion per reason a sample is removed, and what
is kept is exactly the correct, finished, single-language, first-seen completions, verbatim."""

from __future__ import annotations

import pytest

from core.config import RejectionSamplingConfig
from core.generation import Completion
from pocket import world
from rewards.accuracy import is_correct
from rewards.extract import extract_answer, think_text
from rewards.language import language_share
from rewards.verdict import judge, rejection, select
from stages.rejection_sampling import keep_rules

# 4 - 1 + 2 = 5
ROW = {"prompt": "4 - 1 + 2 =", "answer": "5", "task": "chain_sum", "metadata": "{}"}
OTHER = {"prompt": "1 + 1 =", "answer": "2", "task": "chain_sum", "metadata": "{}"}
EN = world.steps_text([4, -1, 2], ["en"] * 3)
FR = world.steps_text([4, -1, 2], ["fr"] * 3)
MIXED = world.steps_text([4, -1, 2], ["en", "fr", "fr"])
CFG = RejectionSamplingConfig(max_tokens=40, language_threshold=1.0)


def answered(think: str, answer: str) -> str:
    return f"<think>{think}</think> <answer>{answer}</answer>"


GOOD = answered(EN, "5")

# (completion, finished, num_tokens, the filter that must remove it or None)
def keep_or_reason(row, text, finished, tokens, cfg, language):
    return rejection(judge(text, row, language=language, finished=finished, num_tokens=tokens), keep_rules(cfg))


def filter_samples(rows, samples, cfg, language):
    return select(rows, samples, keep_rules(cfg), language, [False] * len(rows))


TABLE = [
    (GOOD, True, 30, None),
    (GOOD, False, 30, "overlong"),  # cut off at max_new_tokens
    (GOOD, True, 41, "overlong"),  # finished, but longer than max_tokens
    (answered(EN, "6"), True, 30, "incorrect"),
    (f"<think>{EN}</think>", True, 30, "incorrect"),  # no answer at all
    (answered(MIXED, "5"), True, 30, "mixed_language"),
    (answered(FR, "5"), True, 30, "mixed_language"),  # one language, but not the recipe's
]


@pytest.mark.parametrize(("text", "finished", "tokens", "reason"), TABLE)
def test_each_filter_removes_its_case(text, finished, tokens, reason):
    assert keep_or_reason(ROW, text, finished, tokens, CFG, "en") == reason


def test_a_disabled_filter_keeps_what_it_would_remove():
    lax = CFG.model_copy(update={"keep_correct": False, "keep_single_language": False, "max_tokens": None})
    assert keep_or_reason(ROW, answered(EN, "6"), True, 30, lax, "en") is None
    assert keep_or_reason(ROW, answered(MIXED, "5"), True, 30, lax, "en") is None
    assert keep_or_reason(ROW, GOOD, True, 500, lax, "en") is None  # no max_tokens: finished is enough
    assert keep_or_reason(ROW, GOOD, False, 30, lax, "en") == "overlong"  # unfinished is never kept


def test_the_language_threshold_is_a_share():
    half = CFG.model_copy(update={"language_threshold": 0.3})
    assert 0.3 < language_share(think_text(answered(MIXED, "5")), "en") < 1.0
    assert keep_or_reason(ROW, answered(MIXED, "5"), True, 30, half, "en") is None


def test_filtered_batch_keeps_only_clean_first_seen_completions():
    samples = [
        [Completion(text, tokens, finished) for text, finished, tokens, _ in TABLE]
        + [Completion(f"  {GOOD}\n", 30, True),  # the same completion again, spaced differently
           Completion(GOOD.replace("</think> ", "</think>\n\n"), 30, True)],  # and inside
        [Completion(GOOD, 30, True), Completion(answered("i start from 1 + 1 . then 2", "2"), 12, True)],
    ]
    kept, removed = filter_samples([ROW, OTHER], samples, CFG, "en")
    assert removed == {"overlong": 2, "incorrect": 3, "mixed_language": 2, "duplicate": 2}
    # the first good completion of ROW; for OTHER only its right answer (GOOD answers 5, not 2)
    assert [(row["prompt"], text) for row, text in kept] == [
        (ROW["prompt"], GOOD), (OTHER["prompt"], answered("i start from 1 + 1 . then 2", "2"))]
    for row, text in kept:
        assert is_correct(extract_answer(text), row)
        assert language_share(think_text(text), "en") == 1.0
        assert text == text.strip()


def test_without_dedupe_repeats_are_kept():
    samples = [[Completion(GOOD, 30, True), Completion(GOOD, 30, True)]]
    kept, removed = filter_samples([ROW], samples, CFG.model_copy(update={"dedupe": False}), "en")
    assert len(kept) == 2 and not removed
    kept, removed = filter_samples([ROW, ROW], [[Completion(GOOD, 30, True)]] * 2, CFG, "en")
    assert len(kept) == 1 and removed == {"duplicate": 1}  # the same prompt twice: one row
