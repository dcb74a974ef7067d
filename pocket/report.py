"""How the pocket base answers before any RL (the base stage's eval.json, on validation prompts): how
often it answers directly, writes its work or checks it, and how often each is right, on the task
prompt and on the practice prompt; and that as a small table for the terminal."""

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
    """How the base answers as it samples (temperature 1: its natural mix of styles), before any RL:
    on the task prompt and on the practice prompt ("Work it out, then check your work: ..."), the
    share of its answers that are direct, worked or checked (world.answer_style) and the accuracy of
    each; on the task prompt also by chain length, and greedy accuracy."""
    metrics: dict[str, Any] = {"samples_per_prompt": samples, "temperature": temperature}
    for prompt_kind in ("task", "practice"):
        questions = [r["prompt"] if prompt_kind == "task" else
                     world.PRACTICE_PROMPTS["check"].format(expression=world.show(world.terms_of(r["metadata"])))
                     for r in rows]
        prompts = [render(tokenizer, messages(q, template)) for q in questions]
        sampled = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                           n=samples, seed=0, desc=f"evaluating base ({prompt_kind} prompt, sampled)")
        cells: dict[str, list[float]] = {}
        lengths = []
        for row, completions in zip(rows, sampled, strict=True):
            size = "long" if len(world.terms_of(row["metadata"])) >= 4 else "short"
            for comp in completions:
                v = judge_completion(comp, row, "en")
                style = world.answer_style(comp.text, v.wrote_work)
                for cell in ("all", style, size, f"{size}_{style}"):
                    cells.setdefault(cell, []).append(float(v.correct))
                lengths.append(comp.num_tokens)
        total = len(lengths)
        metrics[prompt_kind] = {
            "accuracy": {k: sum(v) / len(v) for k, v in sorted(cells.items())},
            "styles": {style: len(cells.get(style, [])) / total for style in world.ANSWER_STYLES},
            "count": {k: len(v) for k, v in sorted(cells.items())},
            "mean_length": sum(lengths) / total,
        }
    task_prompts = [render(tokenizer, messages(r["prompt"], template)) for r in rows]
    greedy = generate(model, tokenizer, task_prompts, max_new_tokens=max_new_tokens, desc="evaluating base (greedy)")
    metrics["greedy_accuracy"] = sum(
        bool(judge_completion(c, r, "en").correct) for r, (c,) in zip(rows, greedy, strict=True)) / len(rows)
    metrics["accuracy_all"] = metrics["task"]["accuracy"]["all"]
    return metrics


def format_base_report(m: dict) -> str:
    """How the base answers, as a small table per prompt: the share of each style and its accuracy."""
    lines = [f"the base on validation prompts, {m['samples_per_prompt']} samples each at temperature "
             f"{m['temperature']} (greedy accuracy on the task prompt {m['greedy_accuracy']:.1%}):",
             f"{'':16} {'answers right':>14} " + " ".join(f"{s:>16}" for s in world.ANSWER_STYLES)]
    for kind, label in (("task", "task prompt"), ("practice", "practice prompt")):
        cell = m[kind]
        cols = [f"{cell['styles'][s]:5.0%} ({cell['accuracy'].get(s, 0.0):4.0%} right)" for s in world.ANSWER_STYLES]
        lines.append(f"{label:16} {cell['accuracy']['all']:>14.1%} " + " ".join(f"{c:>16}" for c in cols))
    return "\n".join(lines)
