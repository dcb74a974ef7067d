"""The format reward, table-driven."""

from __future__ import annotations

import pytest

from rewards.format import format_reward, well_formed


@pytest.mark.parametrize(("completion", "prefilled", "expected"), [
    ("<think>add 4 and 1</think><answer>5</answer>", False, True),
    ("<think>\nadd 4 and 1\n</think>\n<answer> 5 </answer>\n", False, True),
    ("  <think>r</think> the answer is 5", False, True),  # plain answer after </think>
    ("<think></think><answer>5</answer>", False, False),  # empty think
    ("<think>   </think><answer>5</answer>", False, False),
    ("<think>r</think><answer></answer>", False, False),  # empty answer
    ("<think>r</think>", False, False),  # no answer
    ("so <think>r</think><answer>5</answer>", False, False),  # text before <think>
    ("<think>r</think><answer>4</answer><answer>5</answer>", False, False),  # two answer tags
    ("<think>r<think>s</think><answer>5</answer>", False, False),  # two <think>
    ("<think>r</think>s</think><answer>5</answer>", False, False),  # two </think>
    ("<think>r <answer>5</answer></think>", False, False),  # answer only inside think
    ("<answer>5</answer><think>r</think>", False, False),  # out of order
    ("<think>r</think><answer>5</answer> trailing", False, False),  # text after </answer>
    ("<think>r</think> so it is 5 . <answer>5</answer>", False, True),  # a summary, then the answer
    ("<think>r</think> so <think> 5 <answer>5</answer>", False, False),  # a tag in the summary
    ("<think>r</think><answer>5", False, False),  # unclosed answer
    ("5", False, False),  # no think at all
    ("add 4 and 1</think><answer>5</answer>", True, True),  # template pre-filled <think>
    ("<think>add</think><answer>5</answer>", True, False),  # a second <think> after the pre-fill
    ("</think><answer>5</answer>", True, False),  # pre-filled, empty think
    ("add 4 and 1 <answer>5</answer>", True, False),  # pre-filled, never closed
])
def test_well_formed(completion, prefilled, expected):
    assert well_formed(completion, prefilled) is expected


def test_require_answer_tags():
    assert well_formed("<think>r</think> 5", require_answer_tags=True) is False
    assert well_formed("<think>r</think> <answer>5</answer>", require_answer_tags=True) is True


@pytest.mark.parametrize(("completion", "prompt", "expected"), [
    ("r</think><answer>5</answer>", "q<think>", 1.0),  # detected from a rendered prompt
    ("r</think><answer>5</answer>", "q", 0.0),
    ([{"role": "assistant", "content": "r</think><answer>5</answer>"}],
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\n"}], 1.0),
    ([{"role": "assistant", "content": "<think>r</think><answer>5</answer>"}], [{"role": "user", "content": "q"}], 1.0),
])
def test_format_reward_detects_prefill(completion, prompt, expected):
    assert format_reward([completion], prompts=[prompt], answer=["5"], log_metric=None) == [expected]


def test_format_reward_explicit_flag():
    assert format_reward(["r</think><answer>5</answer>"], prompts=["q"], think_prefilled=True) == [1.0]
