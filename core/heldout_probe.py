"""A trainer callback that measures held-out accuracy while a stage trains.

Every N steps it decodes a fixed set of held-out prompts greedily with the model being trained
and records accuracy, mean response length and reflection words; the curve is written to
<work>/heldout_curve.json (the R1-Zero "aha" plots read it) and logged to W&B when a run is open.
The all-scenario stage's reward-hacking guard is built on it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from core.config import TemplateConfig
from core.generation import generate
from core.modeling import load_tokenizer
from data.chat import messages, render
from rewards.accuracy import score_completion
from rewards.reflection import reflection_count

log = logging.getLogger(__name__)
CURVE = "heldout_curve.json"


class HeldoutProbe(TrainerCallback):
    """Greedy held-out accuracy every `every` steps (and at the first and last step)."""

    def __init__(self, base: str, rows: list[dict[str, Any]], template: TemplateConfig, every: int,
                 max_new_tokens: int, work: Path):
        self.tokenizer = load_tokenizer(base)  # its own: generation pads on the left
        self.rows, self.every, self.work, self.max_new_tokens = rows, every, work, max_new_tokens
        self.prompts = [render(self.tokenizer, messages(r["prompt"], template)) for r in rows]
        self.history: list[dict[str, float]] = []
        self.writes = True  # only rank 0 writes files when the stage runs in several processes

    def measure(self, model: Any, step: int) -> dict[str, float]:
        was_training = model.training
        outs = generate(model, self.tokenizer, self.prompts, max_new_tokens=self.max_new_tokens, progress=False)
        model.train(was_training)
        texts = [c.text for (c,) in outs]
        correct = [(score_completion(t, r["answer"], r["task"], r["metadata"]) or 0.0) >= 1.0
                   for t, r in zip(texts, self.rows, strict=True)]
        point = {"step": step, "heldout_accuracy": sum(correct) / len(correct),
                 "heldout_mean_length": sum(c.num_tokens for (c,) in outs) / len(outs),
                 "heldout_reflection_words": sum(map(reflection_count, texts)) / len(texts)}
        self.history.append(point)
        self._log(point)
        return point

    def _log(self, point: dict[str, float]) -> None:
        log.info("held-out at step %d: accuracy %.3f, mean length %.1f", point["step"], point["heldout_accuracy"],
                 point["heldout_mean_length"])
        try:
            import wandb

            if wandb.run is not None:
                wandb.run.log({f"heldout/{k}": v for k, v in point.items() if k != "step"}, commit=False)
        except ImportError:
            pass
        if not self.writes:
            return
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / CURVE).write_text(json.dumps(self.history, indent=1))

    def check(self, step: int, model: Any, control: Any) -> None:
        """Hook for subclasses: called after each measurement."""
        self.measure(model, step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.writes = state.is_world_process_zero
        self.check(state.global_step, model, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.check(state.global_step, model, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self.check(state.global_step, model, control)
