"""Cold-start and SFT data: readable, single-language, first-person chains of thought.

The paper's cold start was a few thousand readable examples (`<think>` reasoning ending in a short
summary `</think>`, then the answer), collected from few-shot prompting with long worked examples
and from R1-Zero's own outputs, kept only when verified and readable, then rewritten. Here:
  * generated: the pocket world's oracle writes correct step-by-step solutions;
  * file: the user's {prompt, completion} rows;
  * collected (r1_zero, few_shot): a model's sampled completions, filtered by rewards/verdict.py, rewritten
    by `readable` and capped by `collect` (the sampling itself is the stage's, stages/cold_start_data.py).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from core.config import CollectConfig, Exemplar, TemplateConfig
from core.generation import Completion
from data import pocket
from data.chat import messages
from rewards.verdict import REASONS, Keep, Verdict, select

# Why a collected completion was removed, in the order the filters run.
REMOVED = (*REASONS, "over_cap")


def chain_sum_completion(terms: list[int]) -> str:
    """The readable English solution of a chain sum, as the cold-start set writes it: the work, closed
    by a one-line summary ("so the answer is 3 ."), then the answer. A second summary between
    `</think>` and `<answer>` was tried: 300 examples only half taught it and the mix broke the answer
    tag ("<answer> <answer>"), cutting pass@1 0.72 -> 0.55; without it the cold start lifts it to 0.92."""
    think = pocket.steps_text(terms, ["en"] * len(terms))
    return f"<think> {think} </think> <answer> {sum(terms)} </answer>"


def general_completion(answer: str) -> str:
    """A short, well-formed reply to a general (non-reasoning) task."""
    return f"<think> i read the question and answer it directly . </think> <answer> {answer} </answer>"


def conversation(prompt: str, completion: str, template: TemplateConfig) -> dict[str, Any]:
    """A TRL conversational prompt-completion row (SFT puts the loss on the completion only)."""
    return {"prompt": messages(prompt, template), "completion": [{"role": "assistant", "content": completion}]}


def pocket_cold_start(train: datasets.Dataset, n: int, seed: int, template: TemplateConfig) -> datasets.Dataset:
    """`n` cold-start conversations built from chain-sum training prompts."""
    rows = [r for r in train if pocket.terms_of(r["metadata"])]
    if not rows:
        raise ValueError("the pocket cold start needs chain_sum training prompts; set cold_start.dataset instead")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    return datasets.Dataset.from_list([
        conversation(r["prompt"], chain_sum_completion(pocket.terms_of(r["metadata"])), template) for r in picked
    ])


def file_conversations(path: str, template: TemplateConfig) -> datasets.Dataset:
    """A user's file (.jsonl/.json/.parquet) of `prompt` / `completion` rows as conversations: the
    cold-start set of a real recipe, or rejection sampling's general data."""
    suffix = Path(path).suffix.lower()
    loader = "parquet" if suffix == ".parquet" else "json"
    ds = datasets.load_dataset(loader, data_files=path, split="train")
    missing = {"prompt", "completion"} - set(ds.column_names)
    if missing:
        raise ValueError(f"{path}: expected columns prompt and completion; missing {sorted(missing)}")
    return ds.map(lambda r: conversation(r["prompt"], r["completion"], template), remove_columns=ds.column_names)


# --- collected cold starts (sources r1_zero and few_shot) ------------------------------------

# Long worked examples with a check, for few-shot prompting of the pocket base: short chains, so
# two of them, the question and a long answer fit the pocket model's 384 positions.
POCKET_EXEMPLAR_CHAINS = ((4, -7, 2), (8, 3, -5, 6))
POCKET_PROMPT = "State the final answer to the following arithmetic problem: {expression} ="


def pocket_exemplars() -> list[Exemplar]:
    """The built-in few-shot exemplars of the pocket world: the work, a check, the summary, the answer."""
    out = []
    for chain in POCKET_EXEMPLAR_CHAINS:
        terms = list(chain)
        think = pocket.steps_text(terms, ["en"] * len(terms), conclude=False) + " " + pocket.check_text(terms, sum(terms))
        out.append(Exemplar(prompt=POCKET_PROMPT.format(expression=pocket.show(terms)),
                            completion=f"<think> {think} </think> <answer> {sum(terms)} </answer>"))
    return out


def few_shot_messages(prompt: str, exemplars: Sequence[Exemplar], template: TemplateConfig) -> list[dict[str, str]]:
    """The conversation for few-shot sampling: each exemplar as an earlier user / assistant turn."""
    head = messages(exemplars[0].prompt, template) if exemplars else []
    turns = head[:-1]  # the system message, if any
    for ex in exemplars:
        turns += messages(ex.prompt, template)[-1:] + [{"role": "assistant", "content": ex.completion}]
    return turns + messages(prompt, template)[-1:]


def readable(v: Verdict, summary: str) -> str:
    """A kept completion in the cold start's format: the reasoning closed by a one-line summary (added
    when it has none), then the answer in tags; nothing else."""
    think, answer = v.think, v.answer or ""
    line = summary.format(answer=answer)
    if not " ".join(think.split()).endswith(" ".join(line.split())):
        think = f"{think}\n\n{line}" if "\n" in think else f"{think} {line}"
    return f"<think> {think.strip()} </think> <answer> {answer} </answer>"


def collect(rows: Sequence[dict[str, Any]], samples: Sequence[Sequence[Completion]], cfg: CollectConfig,
            examples: int, language: str, template: TemplateConfig, seed: int, source: str,
            prefilled: Sequence[bool]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The cold-start rows collected from `samples[i]`, the completions of task row `rows[i]` (whose
    rendered prompt pre-filled `<think>` when `prefilled[i]`): verified, readable, rewritten,
    deduplicated, at most `cfg.per_prompt` per prompt and `examples` in all. Returns the rows
    (conversations plus the gold columns that let anyone re-verify them) and what each filter
    removed (`REMOVED`); kept + removed = sampled."""
    keep = Keep(correct=True, well_formed=True, language_threshold=cfg.language_threshold, no_repeats=True,
                max_tokens=cfg.max_tokens, per_prompt=cfg.per_prompt)
    passed, removed = select(rows, samples, keep, language, prefilled, lambda v: readable(v, cfg.summary))
    kept = [conversation(row["prompt"], text, template) | {
        "source": source, "answer": row["answer"], "task": row["task"], "metadata": row["metadata"]}
        for row, text in passed]
    random.Random(seed).shuffle(kept)
    removed["over_cap"] += max(0, len(kept) - examples)
    return kept[:examples], removed
