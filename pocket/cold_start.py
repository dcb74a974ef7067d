"""The pocket world's cold-start material: readable worked solutions written by its oracle (the
`generated` source), and long worked examples with a check for few-shot collection."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import datasets

from core.config import Exemplar
from data.cold_start import conversation
from pocket import world

if TYPE_CHECKING:
    from core.config import TemplateConfig


def chain_sum_completion(terms: list[int]) -> str:
    """The readable English solution of a chain sum, as the cold-start set writes it: the work, closed
    by a one-line summary ("so the answer is 3 ."), then the answer. A second summary between
    `</think>` and `<answer>` was tried: 300 examples only half taught it and the mix broke the answer
    tag ("<answer> <answer>"), cutting pass@1 0.72 -> 0.55; without it the cold start lifts it to 0.92."""
    think = world.steps_text(terms, ["en"] * len(terms))
    return f"<think> {think} </think> <answer> {sum(terms)} </answer>"


def cold_start_rows(train: datasets.Dataset, n: int, seed: int, template: TemplateConfig) -> datasets.Dataset:
    """`n` cold-start conversations built from chain-sum training prompts."""
    rows = [r for r in train if world.terms_of(r["metadata"])]
    if not rows:
        raise ValueError("the pocket cold start needs chain_sum training prompts; set cold_start.dataset instead")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    return datasets.Dataset.from_list([
        conversation(r["prompt"], chain_sum_completion(world.terms_of(r["metadata"])), template) for r in picked
    ])


# Long worked examples with a check, for few-shot prompting of the pocket base: short chains, so
# two of them, the question and a long answer fit the pocket model's 384 positions.
EXEMPLAR_CHAINS = ((4, -7, 2), (8, 3, -5, 6))
EXEMPLAR_PROMPT = "State the final answer to the following arithmetic problem: {expression} ="


def exemplars() -> list[Exemplar]:
    """The built-in few-shot exemplars of the pocket world: the work, a check, the summary, the answer."""
    out = []
    for chain in EXEMPLAR_CHAINS:
        terms = list(chain)
        think = world.steps_text(terms, ["en"] * len(terms), conclude=False) + " " + world.check_text(terms, sum(terms))
        out.append(Exemplar(prompt=EXEMPLAR_PROMPT.format(expression=world.show(terms)),
                            completion=f"<think> {think} </think> <answer> {sum(terms)} </answer>"))
    return out
