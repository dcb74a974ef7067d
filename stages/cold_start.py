"""Stage 1, cold start: SFT of a fresh LoRA adapter on readable long chains of thought."""

from __future__ import annotations

from pathlib import Path

from core.config import Recipe
from core.resources import trainer_stage_bytes
from core.runstore import Ref, RunStore, StageResult
from core.trainers import train_sft
from data.cold_start import file_conversations, pocket_cold_start
from data.saved import SFT_DATASET, load_split

STAGE = "cold_start"


def run(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, base_ref: Ref, force: bool = False) -> Ref:
    cfg, template = recipe.cold_start, recipe.data.template

    def build(work: Path) -> StageResult:
        if cfg.dataset:
            data = file_conversations(cfg.dataset, template)
        else:
            data = pocket_cold_start(load_split(tasks_ref, "train"), cfg.examples, recipe.seed, template)
        data.save_to_disk(str(work / SFT_DATASET))
        metrics = train_sft(base=base_ref.path, adapter=None, lora=recipe.model.lora, dtype=recipe.model.dtype,
                            dataset=data, cfg=cfg, work=work, seed=recipe.seed)
        return StageResult(metrics={**metrics, "examples": len(data)})

    config = {"stage": cfg.model_dump(mode="json"), "lora": recipe.model.lora.model_dump(mode="json"),
              "template": template.model_dump(mode="json"), "seed": recipe.seed}
    return store.run_stage(run_id, STAGE, config, {"tasks": tasks_ref, "base": base_ref}, build, force=force,
                           needs_bytes=trainer_stage_bytes(base_ref.path, recipe.model.lora.r, cfg.save_total_limit))
