"""Stage 4, all-scenario RL: GRPO from the SFT adapter on mixed prompts. Verifiable prompts get the
rule rewards, general prompts the trained reward model (each reward's `rows` in the recipe says
which). A reward-hacking guard measures held-out verifiable accuracy every N steps, keeps the best
adapter, and stops training when accuracy falls by more than the margin (the paper stopped its
reward-model phase early for this reason)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import datasets
from transformers import TrainerCallback

from core.config import GuardConfig, Recipe
from core.generation import generate
from core.modeling import ADAPTER, adapter_path, load_tokenizer
from core.runstore import Ref, RunStore, StageResult
from core.trainers import train_grpo
from data.chat import messages, prompt_dataset, render
from data.general import general_rows
from data.saved import load_split
from rewards.accuracy import score_completion
from stages.reward_model import model_path

log = logging.getLogger(__name__)
STAGE = "all_scenario_rl"
BEST = "best_adapter"


class RewardHackingGuard(TrainerCallback):
    """Held-out verifiable accuracy every `cfg.every` steps; saves the best adapter, stops on a fall."""

    def __init__(self, base: str, rows: list[dict[str, Any]], recipe: Recipe, cfg: GuardConfig, work: Path):
        self.tokenizer = load_tokenizer(base)  # its own: generation pads on the left
        self.rows, self.cfg, self.work = rows, cfg, work
        self.prompts = [render(self.tokenizer, messages(r["prompt"], recipe.data.template)) for r in rows]
        self.max_new_tokens = recipe.all_scenario_rl.max_completion_length
        self.history: list[dict[str, float]] = []
        self.best, self.best_step, self.stopped_at = -1.0, 0, None

    def accuracy(self, model: Any) -> float:
        was_training = model.training
        outs = generate(model, self.tokenizer, self.prompts, max_new_tokens=self.max_new_tokens, progress=False)
        model.train(was_training)
        scores = [score_completion(c.text, r["answer"], r["task"], r["metadata"]) or 0.0
                  for r, (c,) in zip(self.rows, outs, strict=True)]
        return sum(s >= 1.0 for s in scores) / len(scores)

    def _check(self, step: int, model: Any, control: Any) -> None:
        acc = self.accuracy(model)
        self.history.append({"step": step, "heldout_accuracy": acc})
        log.info("guard: step %d held-out accuracy %.3f (best %.3f at step %d)", step, acc, self.best, self.best_step)
        if acc > self.best:
            self.best, self.best_step = acc, step
            model.save_pretrained(self.work / BEST)
        elif acc < self.best - self.cfg.margin:
            log.warning("guard: accuracy fell %.3f -> %.3f (margin %.3f); stopping at step %d and keeping "
                        "the adapter of step %d", self.best, acc, self.cfg.margin, step, self.best_step)
            self.stopped_at = step
            control.should_training_stop = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._check(state.global_step, model, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.cfg.every == 0:
            self._check(state.global_step, model, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self._check(state.global_step, model, control)

    def summary(self) -> dict[str, Any]:
        final = self.history[-1]["heldout_accuracy"] if self.history else None
        return {"guard_history": self.history, "guard_best_accuracy": self.best, "guard_best_step": self.best_step,
                "guard_stopped_at": self.stopped_at, "guard_final_accuracy": final,
                "guard_restored_best": final is not None and final < self.best}


def mixed_prompts(recipe: Recipe, tasks_ref: Ref) -> datasets.Dataset:
    """Verifiable training prompts plus the configured share of general prompts, tagged by `kind`."""
    cfg, template = recipe.all_scenario_rl, recipe.data.template
    verifiable = prompt_dataset(load_split(tasks_ref, "train"), template, cfg.prompts, recipe.seed)
    verifiable = verifiable.add_column("kind", ["verifiable"] * len(verifiable))
    n_general = round(len(verifiable) * cfg.general_fraction / (1 - cfg.general_fraction))
    general = prompt_dataset(datasets.Dataset.from_list(general_rows(n_general, recipe.seed + 1)), template)
    general = general.add_column("kind", ["general"] * len(general))
    return datasets.concatenate_datasets([verifiable, general.cast(verifiable.features)]).shuffle(seed=recipe.seed)


def run(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref,
        reward_model_ref: Ref, force: bool = False) -> Ref:
    cfg = recipe.all_scenario_rl

    def build(work: Path) -> StageResult:
        data = mixed_prompts(recipe, tasks_ref)
        heldout = list(load_split(tasks_ref, "heldout"))[: cfg.guard.prompts]
        guard = RewardHackingGuard(base_ref.path, heldout, recipe, cfg.guard, work)
        metrics = train_grpo(
            base=base_ref.path, adapter=adapter_path(adapter_ref), lora=recipe.model.lora, dtype=recipe.model.dtype,
            dataset=data, cfg=cfg, work=work, seed=recipe.seed, callbacks=[guard],
            reward_context={"reward_model_path": str(model_path(reward_model_ref))},
        )
        summary = guard.summary()
        if summary["guard_restored_best"]:
            shutil.rmtree(work / ADAPTER)
            shutil.copytree(work / BEST, work / ADAPTER)
            load_tokenizer(base_ref.path).save_pretrained(work / ADAPTER)
        shutil.rmtree(work / BEST, ignore_errors=True)
        return StageResult(metrics={**metrics, **summary, "prompts": len(data),
                                    "general_prompts": sum(k == "general" for k in data["kind"])})

    inputs = {"tasks": tasks_ref, "base": base_ref, "adapter": adapter_ref, "reward_model": reward_model_ref}
    config = {"stage": cfg.model_dump(mode="json"), "lora": recipe.model.lora.model_dump(mode="json"),
              "template": recipe.data.template.model_dump(mode="json"), "seed": recipe.seed}
    return store.run_stage(run_id, STAGE, config, inputs, build, force=force)
