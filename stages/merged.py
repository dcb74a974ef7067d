"""The final step: merge a stage's LoRA adapter into the base and save a plain HF model directory
that any tool loads with AutoModelForCausalLM, no PEFT needed."""

from __future__ import annotations

from pathlib import Path

from core.modeling import adapter_path, merge
from core.resources import model_copy_bytes
from core.runstore import StageOutcome, StageResult
from core.stage import StageCall


def run(call: StageCall) -> StageOutcome:
    base_ref, adapter_ref = call.inputs["base"], call.inputs["adapter"]

    def build(work: Path) -> StageResult:
        merge(base_ref.path, adapter_path(adapter_ref), work / "model", call.recipe.model.dtype,
              call.recipe.model.eos_token)
        return StageResult(metrics={"from": f"{adapter_ref.stage} v{adapter_ref.version}"})

    return call.run(build, needs_bytes=model_copy_bytes(base_ref.path))
