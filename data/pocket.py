"""The pocket world: chain sums (reasoning-gym's `chain_sum`) and the ways a "web" writes them up.

A chain sum such as `4 - 1 - 7 + 7` is solved step by step by reducing the first two terms and
copying the rest: `4 - 1 - 7 + 7 . then 3 - 7 + 7 . then -4 + 7 . then 3`. Every step is a
one-digit operation next to a copy of the line before, which a tiny transformer learns easily;
answering a six-term chain in one go is not, so written-out work beats direct answers on long
items, and reinforcement learning has a reason to make the model write more.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from core.config import CorpusMix

TASK = "chain_sum"

# The connective words of each language; the second language's are also what the
# language-consistency reward counts as foreign in an English chain of thought.
PHRASES = {
    "en": {"start": "i start from", "then": "then", "so": "so the answer is", "wait": "wait ,",
           "is": "is", "not": "not"},
    "fr": {"start": "je commence par", "then": "puis", "so": "donc la réponse est", "wait": "attends ,",
           "is": "fait", "not": "et non"},
}


def parse_terms(expression: str) -> list[int]:
    """'4 - 1 - 7 + 7' -> [4, -1, -7, 7]."""
    tokens = expression.split()
    terms, sign = [int(tokens[0])], 1
    for tok in tokens[1:]:
        if tok in "+-":
            sign = 1 if tok == "+" else -1
        else:
            terms.append(sign * int(tok))
    return terms


def show(terms: list[int]) -> str:
    """[3, -7, 7] -> '3 - 7 + 7' (the first term keeps its own sign)."""
    out = str(terms[0])
    for t in terms[1:]:
        out += f" {'-' if t < 0 else '+'} {abs(t)}"
    return out


def reductions(terms: list[int]) -> list[list[int]]:
    """Each line of the step-by-step work, from the whole chain down to the answer."""
    lines = [terms]
    while len(lines[-1]) > 1:
        a, b, *rest = lines[-1]
        lines.append([a + b, *rest])
    return lines


def steps_text(terms: list[int], langs: list[str]) -> str:
    """Step-by-step work; langs[i] is the language of line i (a switch makes mixed-language work)."""
    lines = reductions(terms)
    parts = [f"{PHRASES[langs[0]]['start']} {show(lines[0])} ."]
    for i, line in enumerate(lines[1:], start=1):
        parts.append(f"{PHRASES[langs[i]]['then']} {show(line)} .")
    parts.append(f"{PHRASES[langs[-1]]['so']} {lines[-1][0]} .")
    return " ".join(parts)


def corrected_text(terms: list[int], lang: str, rng: random.Random) -> str:
    """Step-by-step work with one slip that is noticed and fixed ('wait , ...')."""
    lines = reductions(terms)
    p = PHRASES[lang]
    slip = rng.randrange(1, len(lines))
    parts = [f"{p['start']} {show(lines[0])} ."]
    for i, line in enumerate(lines[1:], start=1):
        if i == slip:
            wrong = [line[0] + rng.choice([-1, 1]), *line[1:]]
            a, b = lines[i - 1][0], lines[i - 1][1]
            parts.append(f"{p['then']} {show(wrong)} . {p['wait']} {show([a, b])} {p['is']} {line[0]} "
                         f"{p['not']} {wrong[0]} .")
        parts.append(f"{p['then']} {show(line)} .")
    parts.append(f"{p['so']} {lines[-1][0]} .")
    return " ".join(parts)


def solution(style: str, terms: list[int], rng: random.Random, error_rate: float, max_terms: int,
             second: str = "fr") -> str:
    """One assistant message in the given corpus style."""
    answer = sum(terms)
    n = len(terms)
    if style == "direct":
        # Guessing a long chain at once goes wrong more often than a short one.
        if rng.random() < error_rate * (n - 2) / max(1, max_terms - 2):
            answer += rng.choice([-2, -1, 1, 2])
        return f"<answer> {answer} </answer>"
    if style == "steps":
        think = steps_text(terms, ["en"] * n)
    elif style == "corrected":
        think = corrected_text(terms, "en", rng)
    elif style == "second_language":
        think = steps_text(terms, [second] * n)
    elif style == "mixed_language":
        switch = rng.randrange(1, n)
        first, other = ("en", second) if rng.random() < 0.5 else (second, "en")
        think = steps_text(terms, [first if i < switch else other for i in range(n)])
    else:
        raise ValueError(f"unknown corpus style {style!r}; expected one of {list(CorpusMix.model_fields)}")
    return f"<think> {think} </think> <answer> {answer} </answer>"


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    terms: tuple[int, ...]


def problems(seed: int, size: int, min_terms: int, max_terms: int) -> Iterator[Problem]:
    """Chain-sum problems from reasoning-gym, one-digit terms, as the held-out tasks are made."""
    import reasoning_gym

    ds = reasoning_gym.create_dataset(TASK, size=size, seed=seed, min_terms=min_terms, max_terms=max_terms,
                                      min_digits=1, max_digits=1)
    for entry in ds:
        yield Problem(entry["question"], str(entry["answer"]),
                      tuple(parse_terms(entry["metadata"]["expression"])))


def terms_of(metadata: str | dict) -> list[int] | None:
    """The chain's terms from a task row's metadata, or None for rows of other tasks."""
    meta = json.loads(metadata) if isinstance(metadata, str) else metadata
    expression = meta.get("expression") if isinstance(meta, dict) else None
    return parse_terms(expression) if expression else None
