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

from core.config import GuardConfig, Recipe
from core.heldout_probe import HeldoutProbe
from core.modeling import ADAPTER, adapter_path, load_tokenizer
from core.resources import trainer_stage_bytes
from core.runstore import Ref, RunStore, StageResult
from core.trainers import train_grpo
from data.chat import prompt_dataset
from data.general import general_rows
from data.saved import load_split
from stages.reward_model import model_path

log = logging.getLogger(__name__)
STAGE = "all_scenario_rl"
BEST = "best_adapter"


class RewardHackingGuard(HeldoutProbe):
    """Saves the adapter whenever held-out accuracy reaches a new best; stops training when it falls
    more than `margin` below the best."""

    def __init__(self, base: str, rows: list[dict[str, Any]], recipe: Recipe, cfg: GuardConfig, work: Path):
        super().__init__(base, rows, recipe.data.template, cfg.every, recipe.all_scenario_rl.max_completion_length,
                         work)
        self.margin = cfg.margin
        self.best, self.best_step, self.stopped_at = -1.0, 0, None

    def check(self, step: int, model: Any, control: Any) -> None:
        acc = self.measure(model, step)["heldout_accuracy"]
        if acc > self.best:
            self.best, self.best_step = acc, step
            if self.writes:
                model.save_pretrained(self.work / BEST)
        elif acc < self.best - self.margin:
            log.warning("guard: accuracy fell %.3f -> %.3f (margin %.3f); stopping at step %d and keeping "
                        "the adapter of step %d", self.best, acc, self.margin, step, self.best_step)
            self.stopped_at = step
            control.should_training_stop = True

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
    # the guard keeps a copy of the best adapter besides the trainer's checkpoints
    needs = trainer_stage_bytes(base_ref.path, recipe.model.lora.r, cfg.save_total_limit + 1)
    return store.run_stage(run_id, STAGE, config, inputs, build, force=force, needs_bytes=needs)
