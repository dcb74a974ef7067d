"""R1-Zero: GRPO straight from the base (a fresh LoRA adapter, no SFT), accuracy + format only."""

from __future__ import annotations

from core.config import Recipe
from core.runstore import Ref, RunStore
from core.trainers import grpo_stage

STAGE = "r1_zero"


def run(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, base_ref: Ref, force: bool = False) -> Ref:
    return grpo_stage(recipe, store, run_id, STAGE, recipe.r1_zero, tasks_ref, base_ref, None, force=force)
