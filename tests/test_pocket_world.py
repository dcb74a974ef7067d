"""The pocket world's corpus styles: every line of work is arithmetic that holds, except the slips
the web is meant to make, and every check computes the true answer and catches the slip before it."""

from __future__ import annotations

import random
import re

import pytest

from pocket import world
from rewards.language import word_languages

CHAINS = [[4, -1, -7, 7], [9, 8], [-3, -5, -2, 6, 1], [0, 5, -5]]
def _lines_reduce(work: str) -> bool:
    """A careful reduction ('4 - 1 - 7 . 4 - 1 = 3 , 3 - 7 . 3 - 7 = -4 .'): the chain, then steps that
    each add the line's first two terms, write the sum beside them and carry the rest, down to one term."""
    first, *steps = [part.strip() for part in work.strip().rstrip(".").split(" . ")]
    line = world.parse_terms(first)
    for step in steps:
        pair, _, result = step.partition(" = ")
        value, _, rest = result.partition(" , ")
        if world.parse_terms(pair) != line[:2] or int(value) != line[0] + line[1]:
            return False
        line = [int(value), *line[2:]]
        if (world.parse_terms(rest) if rest else line) != line:
            return False
    return len(line) == 1


def _answer(text: str) -> int:
    return int(re.search(r"<answer> (-?\d+) </answer>", text).group(1))


@pytest.mark.parametrize("terms", CHAINS)
def test_clean_forward_work_is_correct_line_by_line(terms):
    lines = world.noisy_reductions(terms, random.Random(0))
    assert lines == world.reductions(terms) and lines[0] == terms and lines[-1] == [sum(terms)]
    for before, after in zip(lines, lines[1:], strict=False):
        assert after == [before[0] + before[1], *before[2:]]


def test_slips_carry_on_and_copy_slips_change_one_term():
    rng = random.Random(1)
    for _ in range(200):
        terms = [rng.choice([-1, 1]) * rng.randint(1, 9) for _ in range(rng.randint(2, 5))]
        lines = world.noisy_reductions(terms, rng, slip_rate=1.0, copy_slip_rate=1.0)
        assert sum(a != b for a, b in zip(lines[0], terms, strict=True)) == 1  # exactly one term miscopied
        for before, after in zip(lines, lines[1:], strict=False):
            assert after[1:] == before[2:]  # the rest is copied faithfully
            assert 1 <= abs(after[0] - (before[0] + before[1])) <= 2  # every reduction slipped by 1 or 2


@pytest.mark.parametrize("terms", CHAINS)
def test_check_work_redoes_the_reduction_from_the_prompts_chain(terms):
    work = world.check_work(terms)
    assert work.startswith(f"{world.show(terms)} .") and work.endswith(f"= {sum(terms)} .")
    assert _lines_reduce(work)


def test_a_check_agrees_with_right_work_and_repairs_wrong_work():
    terms = [4, -1, -7, 7]
    assert world.check_text(terms, 3).endswith("same , 3 . so the answer is 3 .")
    caught = world.check_text(terms, 5)
    assert "wait , not 5 . it is 3 ." in caught and caught.endswith("so the answer is 3 .")


def test_every_style_concludes_as_designed():
    rng = random.Random(2)
    seen = {"checked": 0, "slipped_unchecked": 0, "caught": 0}
    for _ in range(600):
        terms = [rng.choice([-1, 1]) * rng.randint(1, 9) for _ in range(rng.randint(2, 5))]
        style = rng.choice(world.STYLES)
        text = world.solution(style, terms, rng, error_rate=1.0, max_terms=5, slip_rate=0.3, copy_slip_rate=0.2,
                               check_rate=0.5)
        answer = _answer(text)
        if style == "direct":
            assert "<think>" not in text and abs(answer - sum(terms)) <= 2
            continue
        think = text.split("</think>")[0]
        forward = think.split("check :")[0]
        worked = [int(v) for v in re.findall(r"(?:then|puis) (-?\d+) \.", forward)][-1]  # last forward line
        if world.has_check(text):
            seen["checked"] += 1
            check = think.split("check :")[1].split(" same ,")[0].split(" wait ,")[0]
            assert answer == sum(terms) and _lines_reduce(check) and check.startswith(f" {world.show(terms)} .")
            seen["caught"] += worked != sum(terms)
            assert ("wait , not" in think) == (worked != sum(terms))
        else:
            assert answer == worked  # unchecked work keeps its slip
            seen["slipped_unchecked"] += worked != sum(terms)
    assert all(seen.values()), seen  # each case occurred


def test_practice_documents_are_correct_and_use_other_prompts():
    rng = random.Random(3)
    prompt, reply = world.practice("reduce", [4, -1, -7, 7], rng)
    assert world.chain_of(prompt) == (4, -1, -7, 7) and "arithmetic problem" not in prompt
    assert reply == world.check_work([4, -1, -7, 7])
    assert reply == "4 - 1 - 7 + 7 . 4 - 1 = 3 , 3 - 7 + 7 . 3 - 7 = -4 , -4 + 7 . -4 + 7 = 3 ."
    for _ in range(50):
        prompt, reply = world.practice("check", [4, -1, -7, 7], rng, slip_rate=0.5, copy_slip_rate=0.5)
        assert "arithmetic problem" not in prompt and world.has_check(reply) and _answer(reply) == 3


@pytest.mark.parametrize("style", ["steps", "second_language", "mixed_language"])
def test_checked_practice_comes_in_each_written_style_and_checks_in_english(style):
    rng = random.Random(5)
    seen_french = 0
    for _ in range(50):
        _, reply = world.practice("check", [4, -1, -7, 7, 2], rng, slip_rate=0.5, copy_slip_rate=0.5, style=style)
        work, check = reply.split(world.CHECK_WORD)
        assert _answer(reply) == 5 and check.startswith(" 4 - 1 - 7 + 7 + 2 .")  # the check repairs any slip
        assert "fr" not in word_languages(check)
        seen_french += "fr" in word_languages(work)
    assert (seen_french > 0) == (style != "steps")
    with pytest.raises(ValueError, match="direct"):
        world.practice("check", [1, 2], rng, style="direct")


def test_has_check_and_chain_of():
    assert world.has_check("<think> i start from 1 + 2 . then 3 . check : 1 + 2 = 3 . same , 3 .")
    assert not world.has_check("<think> i start from 1 + 2 . then 3 . so the answer is 3 . </think>")
    assert world.chain_of("State the final answer to the following arithmetic problem: 4 - 1 - 7 =") == (4, -1, -7)
    assert world.chain_of("no chain here") is None


def test_caught_slip_needs_a_real_slip_named_and_repaired():
    slipped = ("<think> i start from 4 + 5 - 2 . then 9 - 2 . then 8 . check : 4 + 5 - 2 = 9 - 2 = 7 . wait , not 8 . "
               "it is 7 . so the answer is 7 . </think> <answer> 7 </answer>")
    assert world.caught_slip(slipped, 7)
    assert not world.caught_slip(slipped.replace("<answer> 7", "<answer> 8"), 7)  # repaired, then not used
    spurious = ("<think> i start from 0 + 5 . then 5 . check : 0 + 5 = 5 . wait , not 2 . it is 5 . "
                "so the answer is 5 . </think> <answer> 5 </answer>")
    assert not world.caught_slip(spurious, 5)  # the work was right: nothing was caught
    assert not world.caught_slip("<think> i start from 4 + 5 - 2 . then 8 . </think> <answer> 7 </answer>", 7)
    for seed in range(200):  # the corpus's own repaired checks are catches
        rng = random.Random(seed)
        terms = [rng.randint(-9, 9) for _ in range(4)]
        text = world.solution("steps", terms, rng, 0.0, 5, slip_rate=0.5, check_rate=1.0)
        worked_wrong = "wait ," in text
        assert world.caught_slip(text, sum(terms)) == worked_wrong, text
