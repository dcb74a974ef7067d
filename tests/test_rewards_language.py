"""Language consistency and reflection words, table-driven."""

from __future__ import annotations

import pytest

from pocket import world
from rewards.language import detect_language, language_consistency, language_share, word_languages
from rewards.reflection import reflection_count, reflection_counts

EN_STEPS = world.steps_text([4, -1, 2], ["en"] * 3)
FR_STEPS = world.steps_text([4, -1, 2], ["fr"] * 3)
MIXED_STEPS = world.steps_text([4, -1, 2], ["en", "fr", "fr"])


@pytest.mark.parametrize(("lang", "key"), [(lang, key) for lang in world.PHRASES for key in world.PHRASES[lang]])
def test_every_pocket_phrase_is_recognised(lang, key):
    words = word_languages(world.PHRASES[lang][key])
    assert words and set(words) == {lang}


@pytest.mark.parametrize(("text", "target", "expected"), [
    (EN_STEPS, "en", 1.0),
    (FR_STEPS, "en", 0.0),
    (FR_STEPS, "fr", 1.0),
    ("i start from 4 . puis 3 .", "en", 0.75),  # i, start, from vs puis
    ("我们先算 then", "zh", 0.8),  # each CJK character is a word
    ("我们先算 then", "en", 0.2),
    ("4 + 1 = 5", "en", 1.0),  # no identified words
    ("", "fr", 1.0),
    ("xyzzy plugh", "en", 1.0),  # unidentified words are ignored
    ("la réponse", "en", 0.0),
    ("the élève", "en", 0.5),  # French-only accents identify an unknown word
    ("on a plus", "en", 1.0),  # words both languages claim are ignored
])
def test_language_share(text, target, expected):
    assert language_share(text, target) == pytest.approx(expected)


def test_mixed_steps_are_partly_english():
    assert 0.0 < language_share(MIXED_STEPS, "en") < 1.0


@pytest.mark.parametrize(("text", "expected"), [
    ("State the final answer to the following arithmetic problem: 4 - 1 =", "en"),
    ("Donne la réponse finale : 4 - 1 =", "fr"),
    ("计算 4 - 1", "zh"),
    ("4 - 1 =", None),
])
def test_detect_language(text, expected):
    assert detect_language(text) == expected


@pytest.mark.parametrize(("completion", "prompt", "language", "expected"), [
    (f"<think> {EN_STEPS} </think> 3", "what is 4 - 1 + 2 ?", None, 1.0),  # target from the prompt
    (f"<think> {FR_STEPS} </think> 3", "what is 4 - 1 + 2 ?", None, 0.0),
    (f"<think> {FR_STEPS} </think> 3", "what is 4 - 1 + 2 ?", "fr", 1.0),  # the column wins
    (f"<think> {EN_STEPS} </think> la réponse est 3", "what is 4 - 1 + 2 ?", None, 1.0),  # only the CoT counts
    (f"{FR_STEPS} </think> 3", "what is 4 - 1 + 2 ? <think>", None, 0.0),  # pre-filled think
    ("<think></think> 3", "what is 4 - 1 + 2 ?", None, 1.0),  # empty think: nothing identified
    (f"<think> {EN_STEPS} </think> 3", "4 - 1 + 2 =", None, 1.0),  # no language in prompt: default en
    ([{"role": "assistant", "content": f"<think> {FR_STEPS} </think> 3"}],
     [{"role": "system", "content": "be brief"}, {"role": "user", "content": "combien font 4 - 1 + 2 ?"}], None, 1.0),
])
def test_language_consistency_reward(completion, prompt, language, expected):
    kwargs = {"language": [language]} if language else {}
    assert language_consistency([completion], prompts=[prompt], **kwargs) == [pytest.approx(expected)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Wait, that is wrong. Let me check: however, but... VERIFY", 6),
    ("waiting checks butter", 0),  # whole words only
    ("retry after the error; evaluate the mistake", 4),
    ("", 0),
    ("wait wait wait", 3),
])
def test_reflection_count(text, expected):
    assert reflection_count(text) == expected


def test_reflection_counts_per_word():
    assert reflection_counts("Wait , wait . but") == {"wait": 2, "but": 1}
