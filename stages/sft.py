"""Stage 3b, SFT on the rejection-sampled dataset: from the reasoning-RL adapter by default, or a
fresh adapter on the base when the recipe says `sft.from_base: true` (the paper restarted)."""

from __future__ import annotations

from pathlib import Path

from core.config import Recipe
from core.modeling import adapter_path
from core.resources import trainer_stage_bytes
from core.runstore import Ref, RunStore, StageResult
from core.trainers import train_sft
from data.saved import load_sft_dataset

STAGE = "sft"


def run(recipe: Recipe, store: RunStore, run_id: str, base_ref: Ref, dataset_ref: Ref, adapter_ref: Ref,
        force: bool = False) -> Ref:
    cfg = recipe.sft

    def build(work: Path) -> StageResult:
        data = load_sft_dataset(dataset_ref).select_columns(["prompt", "completion"])
        if len(data) == 0:
            raise ValueError("the rejection-sampled dataset is empty: no sample passed the filters "
                             "(see its manifest's removed_* counts)")
        metrics = train_sft(base=base_ref.path, adapter=None if cfg.from_base else adapter_path(adapter_ref),
                            lora=recipe.model.lora, dtype=recipe.model.dtype, dataset=data, cfg=cfg, work=work,
                            seed=recipe.seed)
        return StageResult(metrics={**metrics, "examples": len(data)})

    inputs = {"base": base_ref, "dataset": dataset_ref} | ({} if cfg.from_base else {"adapter": adapter_ref})
    config = {"stage": cfg.model_dump(mode="json"), "lora": recipe.model.lora.model_dump(mode="json"),
              "seed": recipe.seed}
    return store.run_stage(run_id, STAGE, config, inputs, build, force=force,
                           needs_bytes=trainer_stage_bytes(base_ref.path, recipe.model.lora.r, cfg.save_total_limit))
