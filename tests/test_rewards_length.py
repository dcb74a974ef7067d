"""Length rewards: DAPO soft overlong punishment, cosine length, token efficiency."""

from __future__ import annotations

import pytest

from rewards.length import cosine_length, lengths, overlong, token_efficiency


def right(n_words: int) -> str:
    return "<think>" + " w" * n_words + "</think> 5"


def wrong(n_words: int) -> str:
    return "<think>" + " w" * n_words + "</think> 4"


@pytest.mark.parametrize(("n_tokens", "expected"), [
    (0, 0.0), (80, 0.0), (90, -0.5), (100, -1.0), (101, -1.0), (10_000, -1.0),
])
def test_overlong_matches_dapo(n_tokens, expected):
    assert overlong(["x"], completion_ids=[[7] * n_tokens], max_completion_len=100, soft_punish_cache=20) == [
        pytest.approx(expected)]


def test_overlong_falls_back_to_words_and_checks_params():
    assert overlong(["a " * 90], max_completion_len=100, soft_punish_cache=20) == [pytest.approx(-0.5)]
    with pytest.raises(ValueError, match="soft_punish_cache"):
        overlong(["x"], max_completion_len=10, soft_punish_cache=20)


def test_lengths_prefers_token_ids():
    assert lengths(["a b c"], [[1, 2]]) == [2]
    assert lengths([[{"role": "assistant", "content": "a b c"}]]) == [3]


@pytest.mark.parametrize(("completion", "n_tokens", "expected"), [
    (right(0), 0, 1.0),  # correct and short: the top
    (right(0), 50, 0.75),  # correct, halfway: mean of 1.0 and 0.5
    (right(0), 100, 0.5),  # correct at max_len
    (right(0), 500, 0.5),  # beyond max_len clamps
    (wrong(0), 0, -1.0),  # wrong and short: the bottom
    (wrong(0), 50, -0.75),
    (wrong(0), 100, -0.5),  # wrong but long: less punished
    ("<think> no close", 10, -1.0 + 0.5 * 0.5 * (1 - 0.9510565162951535)),  # no answer counts as wrong
])
def test_cosine_length(completion, n_tokens, expected):
    out = cosine_length([completion], completion_ids=[[1] * n_tokens], answer=["5"], max_len=100)
    assert out == [pytest.approx(expected)]


def test_cosine_length_unjudgeable_gold_is_none():
    assert cosine_length([right(3)], answer=["\\frac{1}{"]) == [None]


def test_token_efficiency_prefers_the_shorter_correct_answer():
    completions = [right(2), right(10), wrong(1), wrong(20), right(6)]
    prompts = ["q1"] * 4 + ["q2"]
    out = token_efficiency(completions, prompts=prompts, answer=["5"] * 5)
    # q1 lengths (words incl. tags): 4, 12, 3, 22 -> lam = 0.5 - (L - 3) / 19
    assert out[0] == pytest.approx(0.5 - 1 / 19)
    assert out[1] == pytest.approx(0.5 - 9 / 19)
    assert out[0] > out[1]
    assert out[2] == pytest.approx(0.0)  # wrong: min(0, lam); lam = 0.5 here
    assert out[3] == pytest.approx(-0.5)
    assert out[4] == 0.0  # alone in its group


def test_token_efficiency_groups_conversational_prompts_and_uses_ids():
    p1 = [{"role": "user", "content": "q1"}]
    p2 = [{"role": "user", "content": "q2"}]
    out = token_efficiency([right(1), right(1), right(1), right(1)], prompts=[p1, p1, p2, p2],
                           completion_ids=[[1] * 10, [1] * 20, [1] * 5, [1] * 5], answer=["5"] * 4)
    assert out == [pytest.approx(0.5), pytest.approx(-0.5), 0.0, 0.0]


def test_token_efficiency_unjudgeable_is_none():
    assert token_efficiency([right(1), right(2)], prompts=["q", "q"], answer=["", ""]) == [None, None]
