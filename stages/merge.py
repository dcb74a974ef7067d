"""The final step: merge a stage's LoRA adapter into the base and save a plain HF model directory
that any tool loads with AutoModelForCausalLM, no PEFT needed."""

from __future__ import annotations

from pathlib import Path

from core.config import Recipe
from core.modeling import adapter_path, merge
from core.resources import model_copy_bytes
from core.runstore import Ref, RunStore, StageResult

STAGE = "merged"


def run(recipe: Recipe, store: RunStore, run_id: str, base_ref: Ref, adapter_ref: Ref, force: bool = False) -> Ref:
    def build(work: Path) -> StageResult:
        merge(base_ref.path, adapter_path(adapter_ref), work / "model", recipe.model.dtype)
        return StageResult(metrics={"from": f"{adapter_ref.stage} v{adapter_ref.version}"})

    return store.run_stage(run_id, STAGE, {"dtype": recipe.model.dtype}, {"base": base_ref, "adapter": adapter_ref},
                           build, force=force, needs_bytes=model_copy_bytes(base_ref.path))
