"""The pocket world's general (non-reasoning) tasks, with reference answers.

Three kinds, all short and lower-case so the pocket's small byte-level BPE reads them cheaply:
  general/rewrite  "rewrite in upper case: red cat sleeps" -> "RED CAT SLEEPS";
                   "reverse the words: red cat sleeps" -> "sleeps cat red"
  general/word     "how many letters are in lumo ?" -> "4"; "what is the first letter of lumo ?" -> "l"
  general/fact     questions about a seeded little world of towns, each with a house colour and
                   an animal: "what colour is the house in lumo ?" -> "red"
They are the prompts with no verifier that the reward model judges in the all-scenario RL stage,
and the general share of the rejection-sampling SFT mix.
"""

from __future__ import annotations

import json
import random

from data.sources import TaskRow

COLOURS = ("red", "blue", "green", "yellow", "black", "white", "pink", "brown")
ANIMALS = ("cat", "dog", "fox", "owl", "cow", "hen", "bee", "pig", "rat", "bat")
WORDS = ("red", "cat", "sun", "big", "old", "tree", "sleeps", "runs", "small", "river", "house", "green",
         "bird", "sings", "moon", "cold", "fish", "swims", "dog", "jumps")
SYLLABLES = ("lu", "mo", "ka", "ri", "to", "na", "be", "si", "po", "da", "fe", "ni")


def world(seed: int, towns: int = 24) -> dict[str, dict[str, str]]:
    """A seeded table of towns: {town: {"colour": house colour, "animal": animal}}."""
    rng = random.Random(seed)
    out: dict[str, dict[str, str]] = {}
    while len(out) < towns:
        name = "".join(rng.choice(SYLLABLES) for _ in range(2))
        out.setdefault(name, {"colour": rng.choice(COLOURS), "animal": rng.choice(ANIMALS)})
    return out


def _row(task: str, prompt: str, answer: str, **meta: str) -> TaskRow:
    return TaskRow(prompt=prompt, answer=answer, task=task, metadata=json.dumps(meta))


def _rewrite(rng: random.Random) -> TaskRow:
    words = rng.sample(WORDS, rng.randint(2, 3))
    text = " ".join(words)
    if rng.random() < 0.5:
        return _row("general/rewrite", f"rewrite in upper case: {text}", text.upper(), kind="upper", text=text)
    return _row("general/rewrite", f"reverse the words: {text}", " ".join(reversed(words)), kind="reverse",
                text=text)


def _word(rng: random.Random, towns: list[str]) -> TaskRow:
    word = rng.choice(WORDS + tuple(towns))
    if rng.random() < 0.5:
        return _row("general/word", f"how many letters are in {word} ?", str(len(word)), kind="count", word=word)
    return _row("general/word", f"what is the first letter of {word} ?", word[0], kind="first", word=word)


def _fact(rng: random.Random, facts: dict[str, dict[str, str]]) -> TaskRow:
    town = rng.choice(sorted(facts))
    if rng.random() < 0.5:
        return _row("general/fact", f"what colour is the house in {town} ?", facts[town]["colour"], kind="colour",
                    town=town)
    return _row("general/fact", f"which animal lives in {town} ?", facts[town]["animal"], kind="animal", town=town)


def general_rows(n: int, seed: int) -> list[TaskRow]:
    """`n` general tasks (rewrite, word, fact in equal shares, shuffled) from a seeded world."""
    rng = random.Random(seed)
    facts = world(seed)
    makers = (lambda: _rewrite(rng), lambda: _word(rng, sorted(facts)), lambda: _fact(rng, facts))
    return [makers[i % 3]() for i in rng.sample(range(n), n)]
