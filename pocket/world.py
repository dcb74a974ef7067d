"""The pocket world: chain sums (reasoning-gym's `chain_sum`) and the ways a "web" writes them up.

A chain sum such as `4 - 1 - 7 + 7` can be answered at once (a guess on long chains), or worked
forward by reducing the first two terms and copying the rest (`i start from 4 - 1 - 7 + 7 . then
3 - 7 + 7 . then -4 + 7 . then 3`). The web's worked solutions slip now and then (a line off by
one or two, a term miscopied, and the slip carries on). A few of them end with a check: the
reduction done again, carefully and in finer steps, from the prompt's chain, each sum written
beside its two terms (`check : 4 - 1 - 7 + 7 . 4 - 1 = 3 , 3 - 7 + 7 . 3 - 7 = -4 , -4 + 7 . -4 + 7
= 3 . same , 3 .`); when it disagrees it says so and repairs the answer (`wait , not 5 . it is 3 .`).
The finer form is what makes a check worth writing: in the base's own samples a check in it is right
about twice as often as the work before it (see docs/design.md).

How often a skill is *practised* is decoupled from how often solutions *use* it: the corpus has
plenty of practice documents under other prompts: the careful reduction on its own, and worked
solutions that always end with a check. Solutions to the task itself mostly answer directly and
seldom check. The base thus has the skill but seldom uses it, which is what reinforcement learning
exploits: written work beats guessing, and checked work beats unchecked work, in the base's own
samples.

Measured on the base's own samples at temperature 1 (see docs/design.md): a first design checked by another method (add the plus terms, add the minus terms, subtract).
Measured on the base's own samples at temperature 1 it was right only 21% of the time (it dropped
terms when picking them out of the chain), so checked answers were less accurate than plain work
and RL had no reason to keep them. A second design redid the reduction but practised it only
on its own: the base's checks then started from a made-up chain (it had seldom copied the prompt's
chain after a block of work), right in 7% of samples. Practising whole checked solutions under
another prompt teaches that copy.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

TASK = "chain_sum"
WRITTEN_STYLES = ("steps", "second_language", "mixed_language")  # the styles that write their work
STYLES = ("direct", *WRITTEN_STYLES)

# The connective words of each language; the second language's are also what the
# language-consistency reward counts as foreign in an English chain of thought.
PHRASES = {
    "en": {"start": "i start from", "then": "then", "so": "so the answer is", "wait": "wait ,",
           "is": "is", "not": "not"},
    "fr": {"start": "je commence par", "then": "puis", "so": "donc la réponse est", "wait": "attends ,",
           "is": "fait", "not": "et non"},
}
# Checks are written in the target language (English) whatever language the work before them used.
CHECK_WORD = "check :"
PRACTICE_PROMPTS = {
    "reduce": "Reduce step by step: {expression}",
    "check": "Work it out, then check your work: {expression}",
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
    """Each line of the forward work, from the whole chain down to the answer (no slips)."""
    return noisy_reductions(terms, random.Random(0))


def noisy_reductions(terms: list[int], rng: random.Random, slip_rate: float = 0.0,
                     copy_slip_rate: float = 0.0) -> list[list[int]]:
    """Worked forward as the web writes it: the first line may miscopy one term (copy_slip_rate) and
    each reduction may be off by one or two (slip_rate); a slip carries on to the end."""
    first = list(terms)
    if rng.random() < copy_slip_rate:
        i = rng.randrange(len(first))
        first[i] = -first[i] if first[i] and rng.random() < 0.5 else first[i] + rng.choice([-1, 1])
    lines = [first]
    while len(lines[-1]) > 1:
        a, b, *rest = lines[-1]
        value = a + b
        if rng.random() < slip_rate:
            value += rng.choice([-2, -1, 1, 2])
        lines.append([value, *rest])
    return lines


def steps_text(terms: list[int], langs: list[str], lines: list[list[int]] | None = None,
               conclude: bool = True) -> str:
    """Forward work; langs[i] is the language of line i (a switch makes mixed-language work).
    `lines` are the reductions to write (default: the correct ones)."""
    lines = lines or reductions(terms)
    parts = [f"{PHRASES[langs[0]]['start']} {show(lines[0])} ."]
    for i, line in enumerate(lines[1:], start=1):
        parts.append(f"{PHRASES[langs[i]]['then']} {show(line)} .")
    if conclude:
        parts.append(f"{PHRASES[langs[-1]]['so']} {lines[-1][0]} .")
    return " ".join(parts)


def check_work(terms: list[int]) -> str:
    """The careful reduction from the prompt's chain, in finer steps: the chain copied, then each
    sum written next to its two terms before the rest is carried (`4 - 1 - 7 . 4 - 1 = 3 , 3 - 7 .
    3 - 7 = -4 .`), a form the slipping forward work never takes."""
    lines = reductions(terms)
    parts = [f"{show(lines[0])} ."]
    for a, b in zip(lines, lines[1:], strict=False):
        parts.append(f"{show(a[:2])} = {b[0]}" + (f" , {show(b)}" if len(b) > 1 else "") + " .")
    return " ".join(parts)


def check_text(terms: list[int], worked: int) -> str:
    """A check of forward work that reached `worked`: agreement, or the slip caught and repaired."""
    answer = sum(terms)
    verdict = f"same , {answer} ." if worked == answer else f"wait , not {worked} . it is {answer} ."
    return f"{CHECK_WORD} {check_work(terms)} {verdict} {PHRASES['en']['so']} {answer} ."


def has_check(text: str) -> bool:
    """Whether a response checks its work (the pocket world's check, in any language of the work)."""
    return CHECK_WORD in text


ANSWER_STYLES = ("direct", "worked", "checked")


def answer_style(text: str, wrote_work: bool) -> str:
    """How a response answers: at once (no work in its thinking), with written work, or with written
    work and a check (`wrote_work`: the verdict's reading of its thinking)."""
    return "checked" if has_check(text) else "worked" if wrote_work else "direct"


def caught_slip(text: str, answer: int) -> bool:
    """Whether a response's check caught a real slip: the forward work ended on a wrong value, the
    check says so by that value ("wait , not 5 .") and the answer given is right. A "wait" after
    right work is not a catch."""
    if CHECK_WORD not in text:
        return False
    worked = re.findall(r"-?\d+", text.split(CHECK_WORD, 1)[0].split("<think>")[-1])
    given = re.findall(r"<answer>\s*(-?\d+)\s*</answer>", text)
    return (bool(worked) and bool(given) and int(worked[-1]) != answer and int(given[-1]) == answer
            and f"{PHRASES['en']['wait']} not {worked[-1]} ." in text)


def solution(style: str, terms: list[int], rng: random.Random, error_rate: float, max_terms: int,
             second: str = "fr", slip_rate: float = 0.0, copy_slip_rate: float = 0.0,
             check_rate: float = 0.0) -> str:
    """One assistant message in the given corpus style. Written work slips as `noisy_reductions`
    says and ends with a check with probability `check_rate`; the final answer is what the text
    concludes (wrong after an unchecked slip, repaired by a check)."""
    n = len(terms)
    if style == "direct":
        # Guessing a chain at once goes wrong more often the longer it is.
        answer = sum(terms)
        if rng.random() < error_rate * (n - 1) / max(1, max_terms - 1):
            answer += rng.choice([-2, -1, 1, 2])
        return f"<answer> {answer} </answer>"
    if style == "steps":
        langs = ["en"] * n
    elif style == "second_language":
        langs = [second] * n
    elif style == "mixed_language":
        switch = rng.randrange(1, n)
        first, other = ("en", second) if rng.random() < 0.5 else (second, "en")
        langs = [first if i < switch else other for i in range(n)]
    else:
        raise ValueError(f"unknown corpus style {style!r}; expected one of {list(STYLES)}")
    lines = noisy_reductions(terms, rng, slip_rate, copy_slip_rate)
    worked = lines[-1][0]
    if rng.random() < check_rate:
        think, answer = steps_text(terms, langs, lines, conclude=False) + " " + check_text(terms, worked), sum(terms)
    else:
        think, answer = steps_text(terms, langs, lines), worked
    return f"<think> {think} </think> <answer> {answer} </answer>"


def practice(kind: str, terms: list[int], rng: random.Random, slip_rate: float = 0.0,
             copy_slip_rate: float = 0.0, style: str = "steps", second: str = "fr") -> tuple[str, str]:
    """(prompt, reply) of a practice document: the careful reduction on its own ("reduce"), or
    worked solutions that slip as the web's do and always end with a check ("check"), their
    forward work in the given written style (the web's languages; the check is always English)."""
    prompt = PRACTICE_PROMPTS[kind].format(expression=show(terms))
    if kind == "reduce":
        return prompt, check_work(terms)
    if style not in WRITTEN_STYLES:
        raise ValueError(f"a checked practice document needs written work: style {style!r} is not one of "
                         f"{list(WRITTEN_STYLES)}")
    return prompt, solution(style, terms, rng, 0.0, len(terms), second, slip_rate=slip_rate,
                            copy_slip_rate=copy_slip_rate, check_rate=1.0)


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    terms: tuple[int, ...]


def problems(seed: int, size: int, min_terms: int, max_terms: int) -> Iterator[Problem]:
    """Chain-sum problems from reasoning-gym, one-digit terms, as the task's are made."""
    import reasoning_gym

    ds = reasoning_gym.create_dataset(TASK, size=size, seed=seed, min_terms=min_terms, max_terms=max_terms,
                                      min_digits=1, max_digits=1)
    for entry in ds:
        yield Problem(entry["question"], str(entry["answer"]),
                      tuple(parse_terms(entry["metadata"]["expression"])))


def chain_of(prompt: str) -> tuple[int, ...] | None:
    """The chain in a chain-sum prompt ('... problem: 4 - 1 - 7 =' -> (4, -1, -7)), or None."""
    try:
        return tuple(parse_terms(prompt.rsplit(":", 1)[-1].strip().rstrip("=").strip()))
    except (ValueError, IndexError):
        return None


def terms_of(metadata: str | dict) -> list[int] | None:
    """The chain's terms from a task row's metadata, or None for rows of other tasks."""
    meta = json.loads(metadata) if isinstance(metadata, str) else metadata
    expression = meta.get("expression") if isinstance(meta, dict) else None
    return parse_terms(expression) if expression else None
