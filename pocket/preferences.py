"""The pocket world's preference pairs for the reward model, built from its general tasks (general.py).

Every pair shares a prompt; `chosen` is the answer the paper's readability goals prefer: a short
English chain of thought in `<think>`, then the correct answer in `<answer>`. `rejected` is the
same answer spoiled in exactly one way, so the reward model learns each preference on its own:
  mixed    the chain of thought switches between English and French;
  rambling the chain of thought repeats filler ("hmm , let me think again .");
  wrong    tidy, but the answer is wrong.
Pairs use TRL's explicit-prompt conversational format: {"prompt": [user message],
"chosen": [assistant message], "rejected": [assistant message]} plus the spoil `kind`.

Real recipes name a preference dataset instead (`reward_model.dataset`: data/preferences.py brings its
rows to the same format, `kind` None).
"""

from __future__ import annotations

import json
import random
from typing import Any

from data.sources import TaskRow
from pocket.general import ANIMALS, COLOURS

KINDS = ("mixed", "rambling", "wrong")
FILLER = "hmm , let me think again ."
# (English, French) first sentence of the chain of thought per task kind.
OPENINGS = {
    "upper": ("i write each word in capitals .", "je mets chaque mot en majuscules ."),
    "reverse": ("i read the words from the end .", "je lis les mots depuis la fin ."),
    "count": ("i count the letters of {word} one by one .", "je compte les lettres de {word} une par une ."),
    "first": ("i look at the start of {word} .", "je regarde le début de {word} ."),
    "colour": ("i recall the house in {town} .", "je me rappelle la maison de {town} ."),
    "animal": ("i recall the animal that lives in {town} .", "je me rappelle la bête de {town} ."),
}
CONCLUSIONS = ("so the answer is {answer} .", "donc la réponse est {answer} .")


def wrong_answer(row: TaskRow, rng: random.Random) -> str:
    """A plausible but wrong answer to a general task."""
    meta = json.loads(row["metadata"])
    kind, answer = meta["kind"], row["answer"]
    if kind == "upper":
        return meta["text"]  # not rewritten at all
    if kind == "reverse":
        words = meta["text"].split()
        return " ".join(words[1:] + words[:1]) if len(words) > 2 and rng.random() < 0.5 else meta["text"]
    if kind == "count":
        return str(max(1, int(answer) + rng.choice([-2, -1, 1, 2])))
    if kind == "first":
        word = meta["word"]
        return rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[0]])
    pool = COLOURS if kind == "colour" else ANIMALS
    return rng.choice([x for x in pool if x != answer])


def response(row: TaskRow, answer: str, think_langs: tuple[str, str] = ("en", "en"), filler: int = 0) -> str:
    """An assistant reply: opening and conclusion in the given languages, `filler` rambling sentences."""
    meta = json.loads(row["metadata"])
    lang_index = {"en": 0, "fr": 1}
    opening = OPENINGS[meta["kind"]][lang_index[think_langs[0]]].format(**meta)
    conclusion = CONCLUSIONS[lang_index[think_langs[1]]].format(answer=answer)
    middle = " ".join([FILLER, opening] * filler)
    think = " ".join(p for p in (opening, middle, conclusion) if p)
    return f"<think> {think} </think> <answer> {answer} </answer>"


def preference_pair(row: TaskRow, kind: str, rng: random.Random) -> dict[str, Any]:
    """One pair for `row`, its rejected reply spoiled as `kind` (one of KINDS)."""
    chosen = response(row, row["answer"])
    if kind == "mixed":
        rejected = response(row, row["answer"], ("fr", "en") if rng.random() < 0.5 else ("en", "fr"))
    elif kind == "rambling":
        rejected = response(row, row["answer"], filler=rng.randint(1, 3))
    elif kind == "wrong":
        rejected = response(row, wrong_answer(row, rng))
    else:
        raise ValueError(f"unknown spoil kind {kind!r}; expected one of {KINDS}")
    return {
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "kind": kind,
    }


def preference_pairs(rows: list[TaskRow], seed: int) -> list[dict[str, Any]]:
    """One pair per row, the spoil kinds in equal shares."""
    rng = random.Random(seed)
    return [preference_pair(row, KINDS[i % len(KINDS)], rng) for i, row in enumerate(rows)]
