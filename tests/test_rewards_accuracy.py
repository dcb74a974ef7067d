"""Answer extraction and the accuracy reward, table-driven, adversarial cases included."""

from __future__ import annotations

import threading

import pytest

from rewards.accuracy import accuracy, normalize, plain_number, verify
from rewards.extract import answer_region, extract_answer, last_boxed, think_text

HUGE = "123456789012345678901234567890123456789"


@pytest.mark.parametrize(("completion", "prefilled", "expected"), [
    ("<think>a</think><answer>5</answer>", False, "5"),
    ("<think>a</think> <answer>4</answer> then <answer>5</answer>", False, "5"),  # several answer tags: last
    ("<think></think><answer>5</answer>", False, "5"),  # empty think
    ("<think>the answer is <answer>5</answer></think>", False, None),  # answer only inside think
    ("<think>5", False, None),  # never closed: still thinking
    ("reasoning </think> <answer>5</answer>", True, "5"),  # template pre-filled <think>
    ("just reasoning, no close", True, None),
    ("<think>a</think> so \\boxed{\\frac{1}{2}}.", False, "\\frac{1}{2}"),
    ("<think>a</think> \\boxed{1} and \\boxed{2}", False, "2"),
    ("<think>a</think> <answer>5", False, None),  # opened, never closed
    ("<think>a</think>  42  ", False, "42"),  # text after </think>
    ("42", False, "42"),  # no tags at all
    ("<think>a</think>", False, None),  # nothing after the thinking
    ("<think>a</think><think>b</think> 7", False, "7"),  # after the last </think>
])
def test_extract_answer(completion, prefilled, expected):
    assert extract_answer(completion, prefilled) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("\\boxed{a{b}c}", "a{b}c"),
    ("\\boxed{open", None),
    ("\\boxed 5 and {x}", None),  # the brace must open the box's argument
    ("\\fbox{3}", "3"),
    ("\\boxed {7}", "7"),
    ("none", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(("completion", "prefilled", "think", "region"), [
    ("<think> a b </think> c", False, "a b", " c"),
    (" a b </think> c", True, "a b", " c"),
    ("<think> a b", False, "a b", None),
    ("c", False, "", "c"),
])
def test_think_text_and_region(completion, prefilled, think, region):
    assert think_text(completion, prefilled) == think
    assert answer_region(completion, prefilled) == region


@pytest.mark.parametrize(("text", "expected"), [
    ("1,234,567", "1234567"),
    ("١٢٣", "123"),  # Arabic-Indic digits
    ("１２３", "123"),  # full-width digits
    ("  Paris. ", "paris"),
    ("1,23", "1,23"),  # not a thousands separator
])
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(("predicted", "gold", "task", "expected"), [
    ("0.5", "1/2", None, 1.0),
    ("\\frac{1}{2}", "0.5", None, 1.0),
    ("1/2", "\\frac{1}{2}", None, 1.0),
    ("0.50", "1/2", None, 1.0),
    ("1,234", "1234", None, 1.0),  # thousands separator
    ("1,234,567", "1234567", None, 1.0),
    ("١٢٣", "123", None, 1.0),  # unicode digits
    ("１２３", "123", None, 1.0),
    ("−3", "-3", None, 1.0),  # unicode minus
    (HUGE, HUGE, None, 1.0),  # huge integers compare exactly ...
    (HUGE[:-1] + "8", HUGE, None, 0.0),  # ... where a float would call them equal
    ("2.5e3", "2500", None, 1.0),
    ("2x+1", "1+2x", None, 1.0),  # symbolic
    ("x^2+1", "1+x^2", None, 1.0),
    ("\\sqrt{4}", "2", None, 1.0),
    ("\\{1,2\\}", "\\{2,1\\}", None, 1.0),
    ("x = 3", "3", None, 1.0),
    ("4", "5", None, 0.0),
    ("Paris", "paris", None, 1.0),  # normalised exact match
    ("London", "Paris", None, 0.0),
    (None, "5", None, 0.0),  # no answer given
    ("5", "\\frac{1}{", None, None),  # unparseable gold: never 1.0
    ("\\frac{1}{", "\\frac{1}{", None, None),
    ("5", "", None, None),
    ("5", None, None, None),
    ("5", "5", "chain_sum", 1.0),  # reasoning-gym's own scorer
    ("٥", "5", "chain_sum", 1.0),
    ("1,234", "1234", "chain_sum", 1.0),
    ("6", "5", "chain_sum", 0.0),
    (None, "5", "chain_sum", 0.0),
])
def test_verify(predicted, gold, task, expected):
    assert verify(predicted, gold, task) == expected


def test_plain_number_refuses_giant_exponents():
    assert plain_number("1e999999999") is None
    assert plain_number("1e3") == 1000


@pytest.mark.parametrize(("completion", "prompt", "expected"), [
    ("<think>4 + 1 is 5</think><answer>5</answer>", "what is 4 + 1 ?", 1.0),
    ("<think>4 + 1 is 5 so <answer>5</answer></think>", "what is 4 + 1 ?", 0.0),  # answer only inside think
    ("<think>hm</think><answer>4</answer><answer>5</answer>", "what is 4 + 1 ?", 1.0),  # last tag counts
    ("4 + 1 is 5 </think> <answer>5</answer>", "what is 4 + 1 ? <think>", 1.0),  # pre-filled, detected
    ("4 + 1 is 5 <answer>5</answer>", "what is 4 + 1 ? <think>", 0.0),  # pre-filled, never closed
    ([{"role": "assistant", "content": "<think>x</think> 5"}],
     [{"role": "user", "content": "what is 4 + 1 ?"}], 1.0),  # conversational
    ([{"role": "assistant", "content": "x </think> 5"}],
     [{"role": "user", "content": "what is 4 + 1 ?"}, {"role": "assistant", "content": "<think>"}], 1.0),
])
def test_accuracy_reward(completion, prompt, expected):
    assert accuracy([completion], prompts=[prompt], answer=["5"], task=["chain_sum"], metadata=["{}"],
                    trainer_state=None, unknown_column=[1]) == [expected]


def test_accuracy_explicit_prefill_flag_wins():
    assert accuracy(["x </think> 5"], prompts=["no tag"], answer=["5"], think_prefilled=True) == [1.0]
    assert accuracy(["x </think> 5"], prompts=["no tag"], answer=["5"], think_prefilled=False) == [1.0]
    assert accuracy(["5"], prompts=["q <think>"], answer=["5"], think_prefilled=False) == [1.0]
    assert accuracy(["5"], prompts=["q <think>"], answer=["5"]) == [0.0]  # detected: still thinking


def test_accuracy_off_the_main_thread_uses_math_verify_without_signals():
    out: list = []
    thread = threading.Thread(target=lambda: out.append(verify("\\frac{1}{2}", "0.5")))
    thread.start()
    thread.join()
    assert out == [1.0]
