"""Held-out evaluation: pass@1 from k samples, cons@k by majority vote, greedy accuracy, response
length, language consistency and reflection words, per task and overall.

pass@1 is estimated as the mean share of correct samples per prompt (the paper's estimator with
k samples at temperature 0.6, top-p 0.95). cons@k takes the most frequent extracted answer among
the k samples (answers compared after normalisation; samples without an answer do not vote; a tie
goes to the answer reached first, i.e. the earliest sample among the tied ones) and checks it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.config import EvalConfig, TemplateConfig
from core.generation import Completion, generate
from data.chat import messages, render
from rewards.accuracy import normalize, verify
from rewards.extract import extract_answer, think_text
from rewards.language import language_share
from rewards.reflection import reflection_count


@dataclass(frozen=True)
class Sample:
    """One scored completion."""

    answer: str | None
    correct: bool
    num_tokens: int
    language_consistency: float
    reflection_words: int


def score_sample(completion: Completion, row: dict[str, Any], language: str) -> Sample:
    answer = extract_answer(completion.text)
    score = verify(answer, row["answer"], row.get("task"), row.get("metadata"))
    return Sample(answer=answer, correct=(score or 0.0) >= 1.0, num_tokens=completion.num_tokens,
                  language_consistency=language_share(think_text(completion.text) or completion.text, language),
                  reflection_words=reflection_count(completion.text))


def pass_at_1(samples: Sequence[Sample]) -> float:
    """Share of correct samples for one prompt."""
    return sum(s.correct for s in samples) / len(samples) if samples else 0.0


def majority_answer(samples: Sequence[Sample]) -> str | None:
    """The most frequent normalised answer; ties go to the one reached first; None when none answered."""
    votes = Counter(normalize(s.answer) for s in samples if s.answer is not None)
    if not votes:
        return None
    top = max(votes.values())
    return next(normalize(s.answer) for s in samples if s.answer is not None and votes[normalize(s.answer)] == top)


def cons_at_k(samples: Sequence[Sample], row: dict[str, Any]) -> bool:
    """Whether the majority answer of the samples is correct."""
    answer = majority_answer(samples)
    return answer is not None and (verify(answer, row["answer"], row.get("task"), row.get("metadata")) or 0.0) >= 1.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(rows: Sequence[dict[str, Any]], sampled: Sequence[Sequence[Sample]],
              greedy: Sequence[Sample]) -> dict[str, Any]:
    """Metrics per task and overall from scored samples (k per row) and greedy completions."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups["overall"].append(i)
        groups[str(row.get("task"))].append(i)

    def metrics(idx: list[int]) -> dict[str, float]:
        flat = [s for i in idx for s in sampled[i]]
        return {
            "prompts": len(idx),
            "pass_at_1": _mean([pass_at_1(sampled[i]) for i in idx]),
            "cons_at_k": _mean([float(cons_at_k(sampled[i], rows[i])) for i in idx]),
            "greedy_accuracy": _mean([float(greedy[i].correct) for i in idx]),
            "mean_length": _mean([s.num_tokens for s in flat]),
            "language_consistency": _mean([s.language_consistency for s in flat]),
            "reflection_words": _mean([s.reflection_words for s in flat]),
        }

    per_task = {task: metrics(idx) for task, idx in sorted(groups.items()) if task != "overall"}
    return {"overall": metrics(groups["overall"]), "per_task": per_task, "k": len(sampled[0]) if sampled else 0}


def evaluate(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], cfg: EvalConfig,
             template: TemplateConfig, language: str, seed: int = 0, desc: str = "evaluating") -> dict[str, Any]:
    """Sample k completions and one greedy completion per held-out row, score and summarise them."""
    prompts = [render(tokenizer, messages(r["prompt"], template)) for r in rows]
    sampled = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                       top_p=cfg.top_p, n=cfg.samples, batch_size=cfg.batch_size, seed=seed, desc=f"{desc} (k)")
    greedy = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                      desc=f"{desc} (greedy)")
    scored = [[score_sample(c, r, language) for c in comps] for r, comps in zip(rows, sampled, strict=True)]
    scored_greedy = [score_sample(c, r, language) for r, (c,) in zip(rows, greedy, strict=True)]
    out = summarize(rows, scored, scored_greedy)
    out["examples"] = [{"prompt": r["prompt"], "answer": r["answer"], "greedy": g[0].text}
                       for r, g in list(zip(rows, greedy, strict=True))[:5]]
    return out


COLUMNS = ("pass_at_1", "cons_at_k", "greedy_accuracy", "mean_length", "language_consistency", "reflection_words")


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per evaluated model/stage, of the overall metrics."""
    k = next((r.get("k") for r in results.values()), "k")
    header = ["stage", "pass@1", f"cons@{k}", "greedy acc", "mean length", "lang consistency", "reflection words"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, res in results.items():
        o = res["overall"]
        cells = [f"{o['pass_at_1']:.3f}", f"{o['cons_at_k']:.3f}", f"{o['greedy_accuracy']:.3f}",
                 f"{o['mean_length']:.1f}", f"{o['language_consistency']:.3f}", f"{o['reflection_words']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
