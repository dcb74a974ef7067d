"""One verdict over a completion, and one filter over verdicts.

"Did it finish, is its answer right, is it in the R1 shape, what language does it think in, does
it loop, did it write its work out or check it?" is asked by the cold start and rejection sampling
(what to keep), the evaluation (what to count), the GRPO monitors (what to log per step) and the
base's report (how it answers). They all ask `judge`, so they cannot disagree; in particular every
one of them reads the thinking the same way when a chat template pre-fills `<think>` (detected
from the rendered prompt: `rewards.completions.think_prefilled`).

The filter (`Keep`, `select`) is the sampling stages' one definition of a usable sample: each
enabled rule removes a completion for one reason (`REASONS`, in the order they are tried), then
duplicates of a kept completion of the same prompt, then completions past a per-prompt cap.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewards.accuracy import is_correct
from rewards.completions import prompt_key
from rewards.extract import extract_answer, think_text
from rewards.format import well_formed
from rewards.language import language_share
from rewards.reflection import reflection_count

# Why a sampled completion was removed, in the order the rules are tried.
REASONS = ("overlong", "incorrect", "format", "mixed_language", "repeated_lines", "duplicate", "per_prompt")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def repeats(think: str, min_words: int = 3) -> bool:
    """Whether reasoning repeats a line of at least `min_words` words (a loop, not a readable chain):
    lines are split at newlines, or at sentence ends when there are none."""
    lines = think.splitlines() if "\n" in think.strip() else _SENTENCE_END.split(think)
    words = [[w for w in line.lower().split() if any(ch.isalnum() for ch in w)] for line in lines]
    counts = Counter(" ".join(w) for w in words if len(w) >= min_words)
    return any(n > 1 for n in counts.values())


def wrote_work(think: str) -> bool:
    """Whether a chain of thought writes out work (any digit in it), rather than answering at once."""
    return any(c.isdigit() for c in think)


@dataclass(frozen=True)
class Verdict:
    """What one completion is, judged against its task row (`correct` is None without a row)."""

    text: str
    answer: str | None
    correct: bool | None
    finished: bool
    num_tokens: int
    think_prefilled: bool
    well_formed: bool
    think: str  # the chain of thought ('' when there is none)
    language_share: float  # share of the thinking's words (the whole text's, without thinking) in the target
    repeats: bool
    reflection_words: int

    @property
    def wrote_work(self) -> bool:
        return wrote_work(self.think)

    @property
    def reflected(self) -> bool:
        return self.reflection_words > 0


def judge(text: str, row: Mapping[str, Any] | None = None, *, language: str = "en", finished: bool = True,
          num_tokens: int = 0, think_prefilled: bool = False) -> Verdict:
    """The verdict on a completion `text` for task `row` (None: no gold answer to check against);
    `think_prefilled`: the prompt it answers already opened `<think>`."""
    answer = extract_answer(text, think_prefilled)
    think = think_text(text, think_prefilled)
    return Verdict(
        text=text, answer=answer, correct=None if row is None else is_correct(answer, row), finished=finished,
        num_tokens=num_tokens, think_prefilled=think_prefilled, well_formed=well_formed(text, think_prefilled),
        think=think, language_share=language_share(think or text, language), repeats=repeats(think),
        reflection_words=reflection_count(text))


def judge_completion(completion: Any, row: Mapping[str, Any] | None, language: str,
                     think_prefilled: bool = False) -> Verdict:
    """`judge` of a sampled Completion (core.generation: text, num_tokens, finished)."""
    return judge(completion.text, row, language=language, finished=completion.finished,
                 num_tokens=completion.num_tokens, think_prefilled=think_prefilled)


# --- the filter --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keep:
    """The rules a sampling stage keeps a completion by (every one off by default but `finished`)."""

    correct: bool = False  # the answer verifies
    well_formed: bool = False  # one think block, then the answer
    language_threshold: float | None = None  # at least this share of thinking words in the target language
    no_repeats: bool = False  # no line of reasoning repeated
    max_tokens: int | None = None  # at most this many generated tokens
    dedupe: bool = True  # one copy of each kept text per prompt
    per_prompt: int | None = None  # kept completions per prompt at most


def rejection(v: Verdict, keep: Keep) -> str | None:
    """None when the verdict passes every enabled rule, else the first rule it fails (`REASONS`)."""
    if not v.finished or (keep.max_tokens is not None and v.num_tokens > keep.max_tokens):
        return "overlong"
    if keep.correct and not v.correct:
        return "incorrect"
    if keep.well_formed and not v.well_formed:
        return "format"
    if keep.language_threshold is not None and v.language_share < keep.language_threshold:
        return "mixed_language"
    if keep.no_repeats and v.repeats:
        return "repeated_lines"
    return None


def select(rows: Sequence[Mapping[str, Any]], samples: Sequence[Sequence[Any]], keep: Keep, language: str,
           prefilled: Sequence[bool], rewrite: Callable[[Verdict], str] = lambda v: v.text.strip(),
           ) -> tuple[list[tuple[Mapping[str, Any], str]], Counter[str]]:
    """The (row, rewritten text) pairs of `samples[i]` (the completions of `rows[i]`, whose prompt
    pre-filled `<think>` when `prefilled[i]`) that `keep` keeps, and how many each reason removed:
    kept + removed = sampled."""
    removed: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    kept = []
    for row, completions, pre in zip(rows, samples, prefilled, strict=True):
        taken = 0
        for completion in completions:
            v = judge_completion(completion, row, language, pre)
            reason = rejection(v, keep)
            text = rewrite(v) if reason is None else ""
            seen_key = (prompt_key(row["prompt"]), " ".join(text.split()))
            if reason is None and keep.dedupe and seen_key in seen:
                reason = "duplicate"
            if reason is None and keep.per_prompt is not None and taken >= keep.per_prompt:
                reason = "per_prompt"
            if reason:
                removed[reason] += 1
                continue
            seen.add(seen_key)
            taken += 1
            kept.append((row, text))
    return kept, removed
