"""The general (non-reasoning) rows a recipe mixes into training, from one source chosen the same
way for every stage that uses them (stage 3's SFT mix, stage 4's prompts without a verifier):
  1. the recipe's file of {prompt, completion} rows (`rejection_sampling.general_dataset`);
  2. else the reward model's preference dataset (`reward_model.dataset`: what it learned to judge),
     each prompt with its chosen reply;
  3. else the pocket world's general tasks, with their gold answers.
Each row has `prompt`, `reply` (an answer in the R1 shape) and the gold columns `answer`, `task`,
`metadata` (empty where the source has no gold). A stage that calls `general_rows` declares
`SETTINGS` among the settings it uses (stages/graph.py), so its cache key follows the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pocket
from data.cold_start import file_rows, general_completion
from data.preferences import dataset_pairs

SETTINGS = ("rejection_sampling.general_dataset", "reward_model.dataset")
NO_GOLD = {"answer": "", "task": "general", "metadata": "{}"}


def general_rows(recipe: Any, n: int, seed: int, fits: Callable[[str], bool] = lambda prompt: True
                 ) -> list[dict[str, Any]]:
    """`n` general rows (fewer when the source runs out), shuffled by `seed`; `fits` drops prompts
    a stage cannot use (too long for vLLM's context). Pocket prompts are short and not filtered."""
    path, prefs = recipe.rejection_sampling.general_dataset, recipe.reward_model.dataset
    if path:
        ds = file_rows(path, "rejection_sampling.general_dataset").shuffle(seed=seed)
        rows = [{"prompt": r["prompt"], "reply": r["completion"]} for r in ds]
        return [r | NO_GOLD for r in rows if fits(r["prompt"])][:n]
    if prefs is not None:
        pairs, _ = dataset_pairs(prefs, 2 * n, 0, seed)  # room for prompts too long to keep
        rows = [{"prompt": p["prompt"][-1]["content"], "reply": general_completion(p["chosen"][-1]["content"])}
                for p in pairs]
        return [r | NO_GOLD for r in rows if fits(r["prompt"])][:n]
    return [{"prompt": r["prompt"], "reply": general_completion(r["answer"]), "answer": r["answer"],
             "task": r["task"], "metadata": r["metadata"]} for r in pocket.general_rows(n, seed)]
