"""Stage 2, reasoning RL: GRPO continuing the cold-start adapter on verifiable prompts, with
accuracy + format + language-consistency rewards (the recipe's list and weights)."""

from __future__ import annotations

from core.config import Recipe
from core.runstore import Ref, RunStore
from core.trainers import grpo_stage

STAGE = "reasoning_rl"


def run(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref,
        force: bool = False) -> Ref:
    return grpo_stage(recipe, store, run_id, STAGE, recipe.reasoning_rl, tasks_ref, base_ref, adapter_ref,
                      force=force)
