"""Distillation: a smaller student fine-tuned (SFT, fresh LoRA adapter) on the teacher's
rejection-sampled dataset, and the same student trained by GRPO alone, for comparison.

The pocket student is built like the pocket base (same corpus and tokenizer recipe, a smaller
model from `distill.student`); a real recipe names a model path in `distill.student_model`.
"""

from __future__ import annotations

from pathlib import Path

from core.config import Recipe
from core.resources import pocket_bytes, trainer_stage_bytes
from core.runstore import Ref, RunStore, StageResult
from core.trainers import grpo_stage, train_sft
from data.saved import load_sft_dataset, load_split
from stages.base import pocket_base

STUDENT_BASE, DISTILLED, RL_ONLY = "student_base", "student_distilled", "student_rl"


def student_base(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, force: bool = False) -> Ref:
    cfg = recipe.distill

    def build(work: Path) -> StageResult:
        if cfg.student_model != "pocket":
            return StageResult(metrics={"model": cfg.student_model}, artifact=Path(cfg.student_model))
        heldout = list(load_split(tasks_ref, "heldout")["prompt"])
        return StageResult(artifact=pocket_base(cfg.student, recipe.data.template, heldout, store))

    config = {"student_model": cfg.student_model, "student": cfg.student.model_dump(mode="json"),
              "template": recipe.data.template.model_dump(mode="json")}
    needs = pocket_bytes(cfg.student) if cfg.student_model == "pocket" else None
    return store.run_stage(run_id, STUDENT_BASE, config, {"tasks": tasks_ref}, build, force=force,
                           needs_bytes=needs)


def distilled(recipe: Recipe, store: RunStore, run_id: str, student_ref: Ref, dataset_ref: Ref,
              force: bool = False) -> Ref:
    cfg = recipe.distill.sft

    def build(work: Path) -> StageResult:
        data = load_sft_dataset(dataset_ref).select_columns(["prompt", "completion"])
        metrics = train_sft(base=student_ref.path, adapter=None, lora=recipe.model.lora, dtype=recipe.model.dtype,
                            dataset=data, cfg=cfg, work=work, seed=recipe.seed)
        return StageResult(metrics={**metrics, "examples": len(data)})

    config = {"stage": cfg.model_dump(mode="json"), "lora": recipe.model.lora.model_dump(mode="json"),
              "seed": recipe.seed}
    return store.run_stage(run_id, DISTILLED, config, {"base": student_ref, "dataset": dataset_ref}, build,
                           force=force, needs_bytes=trainer_stage_bytes(student_ref.path, recipe.model.lora.r,
                                                                        cfg.save_total_limit))


def rl_only(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, student_ref: Ref,
            force: bool = False) -> Ref:
    return grpo_stage(recipe, store, run_id, RL_ONLY, recipe.distill.rl, tasks_ref, student_ref, None, force=force)
