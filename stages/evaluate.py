"""Evaluation as a pipeline step: a base model, or the base with a stage's adapter, on the
held-out prompts only (never the training split). Writes eval.json and table.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import Recipe
from core.evaluation import evaluate, format_table
from core.modeling import ModelError, adapter_path, inference_model, load_tokenizer
from core.runstore import Ref, RunStore, StageResult
from data.saved import load_split

RESULTS = "eval.json"


def stage_name(name: str) -> str:
    return f"eval_{name}"


def heldout_rows(recipe: Recipe, tasks_ref: Ref) -> list[dict[str, Any]]:
    rows = list(load_split(tasks_ref, "heldout"))
    return rows[: recipe.eval.prompts] if recipe.eval.prompts else rows


def load_results(ref: Ref) -> dict[str, Any]:
    return json.loads((Path(ref.path) / RESULTS).read_text())


def import_adapter(store: RunStore, run_id: str, path: str) -> Ref:
    """Record a user's PEFT adapter directory (hashed by content) so it can be evaluated like a stage's."""
    adapter = Path(path)
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"{path}: not a PEFT adapter directory (expected adapter_config.json in it)")
    return store.run_stage(run_id, "adapter_import", {"path": str(adapter.resolve())}, {},
                           lambda work: StageResult(artifact=adapter.resolve()))


def run(recipe: Recipe, store: RunStore, run_id: str, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref | None,
        name: str, force: bool = False) -> Ref:
    def build(work: Path) -> StageResult:
        tokenizer = load_tokenizer(base_ref.path)
        model = inference_model(base_ref.path, adapter_path(adapter_ref) if adapter_ref else None, recipe.model.dtype)
        results = evaluate(model, tokenizer, heldout_rows(recipe, tasks_ref), recipe.eval, recipe.data.template,
                           recipe.data.language, seed=recipe.seed, desc=f"evaluating {name}")
        (work / RESULTS).write_text(json.dumps(results, indent=2))
        (work / "table.md").write_text(format_table({name: results}) + "\n")
        return StageResult(metrics=results["overall"])

    inputs = {"tasks": tasks_ref, "base": base_ref} | ({"adapter": adapter_ref} if adapter_ref else {})
    config = {"eval": recipe.eval.model_dump(mode="json"), "template": recipe.data.template.model_dump(mode="json"),
              "language": recipe.data.language, "seed": recipe.seed}
    return store.run_stage(run_id, stage_name(name), config, inputs, build, force=force)
