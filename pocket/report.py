"""How the pocket base answers: held-out accuracy as it samples, split by whether it wrote out its
work or answered at once and by chain length (the base stage's eval.json), and that as a small table
for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.generation import generate
from data.chat import messages, render
from pocket import world
from rewards.verdict import judge_completion

if TYPE_CHECKING:
    from core.config import TemplateConfig


def base_report(model: Any, tokenizer: Any, rows: list[dict], template: TemplateConfig, samples: int = 4,
                      temperature: float = 1.0, max_new_tokens: int = 160) -> dict[str, Any]:
    """Held-out accuracy of the base as it samples (temperature 1: its natural mix of styles), split
    by whether it wrote out steps or answered directly and by item length; plus greedy accuracy."""
    prompts = [render(tokenizer, messages(r["prompt"], template)) for r in rows]
    sampled = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                       n=samples, seed=0, desc="evaluating base (sampled)")
    greedy = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, desc="evaluating base (greedy)")
    cells: dict[str, list[float]] = {}
    lengths = []
    for row, completions in zip(rows, sampled, strict=True):
        terms = world.terms_of(row["metadata"])
        size = "long" if terms and len(terms) >= 4 else "short"
        for comp in completions:
            v = judge_completion(comp, row, "en")
            correct, style = float(v.correct), "steps" if v.wrote_work else "direct"
            for cell in ("all", style, size, f"{size}_{style}"):
                cells.setdefault(cell, []).append(correct)
            lengths.append(comp.num_tokens)
    metrics: dict[str, Any] = {f"accuracy_{k}": sum(v) / len(v) for k, v in sorted(cells.items())}
    metrics.update({f"count_{k}": len(v) for k, v in sorted(cells.items())})
    metrics["steps_share"] = len(cells.get("steps", [])) / len(lengths)
    metrics["mean_length"] = sum(lengths) / len(lengths)
    metrics["greedy_accuracy"] = sum(
        bool(judge_completion(c, r, "en").correct) for r, (c,) in zip(rows, greedy, strict=True)) / len(rows)
    metrics["samples_per_prompt"], metrics["temperature"] = samples, temperature
    return metrics


def format_base_report(m: dict) -> str:
    """The base's held-out accuracy as a small table: written-out steps vs direct answers."""
    rows = [("all items", "all", ""), ("short (2-3 terms)", "short", "short_"), ("long (4+ terms)", "long", "long_")]
    lines = [f"held-out accuracy, {m['samples_per_prompt']} samples per prompt at temperature {m['temperature']}: "
             f"{m['accuracy_all']:.1%} (greedy: {m['greedy_accuracy']:.1%}); steps written in "
             f"{m['steps_share']:.0%} of answers, mean length {m['mean_length']:.1f} tokens",
             f"{'':20} {'overall':>14} {'with steps':>14} {'direct':>14}"]
    for label, cell, prefix in rows:
        cols = []
        for key in (cell, f"{prefix}steps", f"{prefix}direct"):
            acc, n = m.get(f"accuracy_{key}"), m.get(f"count_{key}", 0)
            cols.append(f"{acc:6.1%} (n={n:3d})" if acc is not None else f"{'-':>14}")
        lines.append(f"{label:20} " + " ".join(f"{c:>14}" for c in cols))
    return "\n".join(lines)
