"""SFT of the LoRA adapter on a stage's dataset: the cold start (stage 1b: a fresh adapter on the
cold-start set), stage 3b (the rejection-sampled set, from the reasoning-RL adapter by default, or a
fresh adapter on the base with `sft.from_base: true`, as the paper restarted), and distillation (a
fresh adapter on the smaller student, trained on the teacher's dataset)."""

from __future__ import annotations

from pathlib import Path

from core.modeling import adapter_path
from core.resources import trainer_stage_bytes
from core.runstore import StageOutcome, StageResult
from core.stage import StageCall
from core.trainers import train_sft
from data.saved import load_sft_dataset


def run(call: StageCall) -> StageOutcome:
    cfg, recipe = call.cfg, call.recipe
    base_ref, dataset_ref = call.inputs["base"], call.inputs["dataset"]
    # A stage with an adapter input continues it unless its config says to start afresh.
    adapter_ref = None if cfg.from_base else call.inputs.get("adapter")
    model = recipe.model

    def build(work: Path) -> StageResult:
        data = load_sft_dataset(dataset_ref).select_columns(["prompt", "completion"])
        if len(data) == 0:
            raise ValueError(f"{call.spec.name}: its dataset is empty: no sample passed the filters "
                             "(see the dataset stage's manifest, its removed_* counts)")
        metrics = train_sft(base=base_ref.path, adapter=adapter_path(adapter_ref) if adapter_ref else None,
                            lora=model.lora, dtype=model.dtype, dataset=data, cfg=cfg, work=work, seed=recipe.seed,
                            eos_token=model.eos_token)
        return StageResult(metrics={**metrics, "examples": len(data)})

    inputs = {"base": base_ref, "dataset": dataset_ref} | ({"adapter": adapter_ref} if adapter_ref else {})
    return call.run(build, inputs=inputs,
                    needs_bytes=trainer_stage_bytes(base_ref.path, model.lora.r, cfg.save_total_limit))
