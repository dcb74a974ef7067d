"""Stage 1, cold start: SFT of a fresh LoRA adapter on readable long chains of thought (generated
for the pocket world, or the recipe's file of {prompt, completion} rows)."""

from __future__ import annotations

from pathlib import Path

from core.resources import trainer_stage_bytes
from core.runstore import StageOutcome, StageResult
from core.stage import StageCall
from core.trainers import train_sft
from data.cold_start import file_conversations, pocket_cold_start
from data.saved import SFT_DATASET, load_split


def run(call: StageCall) -> StageOutcome:
    cfg, recipe = call.cfg, call.recipe
    task_data_ref, base_ref = call.inputs["task_data"], call.inputs["base"]
    template, model = recipe.data.template, recipe.model

    def build(work: Path) -> StageResult:
        if cfg.dataset:
            data = file_conversations(cfg.dataset, template)
        else:
            data = pocket_cold_start(load_split(task_data_ref, "train"), cfg.examples, recipe.seed, template)
        data.save_to_disk(str(work / SFT_DATASET))
        metrics = train_sft(base=base_ref.path, adapter=None, lora=model.lora, dtype=model.dtype,
                            dataset=data, cfg=cfg, work=work, seed=recipe.seed,
                            eos_token=model.eos_token)
        return StageResult(metrics={**metrics, "examples": len(data)})

    return call.run(build, needs_bytes=trainer_stage_bytes(base_ref.path, model.lora.r, cfg.save_total_limit))
