"""Stage 0b: the base model, and the smaller student that distillation trains.

With `model.base: pocket` (the embedded default) the pocket world builds its base (pocket/: a
generated corpus, a BPE tokenizer with a chat template, a tiny Qwen2 pretrained from scratch),
cached under its content key in runs/cache/ so it is built once; the stage then reports how it
answers (accuracy by style on validation prompts). With any other `model.base` (a local directory or hub id)
the stage only records and hashes the model. The distillation student (`student_base`) is built
the same way from `distill.student`, or is the model at `distill.student_model`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer

import pocket
from core.config import PocketConfig, TemplateConfig
from core.layout import EVAL_RESULTS
from core.machine import DtypeChoice
from core.resources import pocket_bytes
from core.runstore import Ref, RunStore, StageOutcome, StageResult
from core.stage import StageCall
from data.saved import STRESS, has_split, load_split

log = logging.getLogger(__name__)
CACHE = "pocket-base"  # runs/cache/pocket-base/<key>


def held_out_prompts(task_data_ref: Ref) -> list[str]:
    """Every prompt no pocket corpus may contain: validation, test and the stress splits."""
    return [p for part in ("validation", "test", *STRESS) if has_split(task_data_ref, part)
            for p in load_split(task_data_ref, part)["prompt"]]


def resolved(cfg: PocketConfig, store: RunStore, seed: int) -> tuple[PocketConfig, DtypeChoice]:
    """The section as its base is built on this machine: its pretraining dtype chosen (`auto`) and
    its seed the world's when it names none; the dtype choice with its reason."""
    choice = pocket.compute_dtype(cfg, store.root / "cache" / "machine")
    return cfg.model_copy(update={"autocast": choice.dtype, "seed": seed if cfg.seed is None else cfg.seed}), choice


def ready(cfg: PocketConfig, template: TemplateConfig, held_out: list[str], store: RunStore, seed: int) -> str | None:
    """'shipped' or 'cached' when this base needs no pretraining here, else None."""
    key = pocket.base_key(resolved(cfg, store, seed)[0], template, held_out)
    if pocket.shipped_base(key):
        return "shipped"
    return "cached" if store.cached(CACHE, key) else None


def pocket_base(cfg: PocketConfig, template: TemplateConfig, held_out: list[str], store: RunStore, seed: int
                ) -> tuple[Path, dict[str, Any]]:
    """The pocket base directory for this config, shared by every run: the shipped one when the project
    ships a base with this key, else built once into the run store's cache. `held_out`: prompts whose
    chains its corpus leaves out; `seed`: the world's, when the section names none. Also how it came
    to be: its key, the pretraining dtype this machine chose and why, shipped or built."""
    cfg, choice = resolved(cfg, store, seed)
    key = pocket.base_key(cfg, template, held_out)
    shipped = pocket.shipped_base(key)
    origin = "shipped" if shipped else "built"

    def build(out: Path) -> None:
        if shipped:
            shutil.copytree(shipped, out, dirs_exist_ok=True)
        else:
            log.info("base: building v%s, pretraining in %s (%s)", key, choice.dtype, choice.reason)
            pocket.build_base(cfg, template, held_out, out)

    path = store.cached_build(CACHE, key, build)
    log.info("base: %s v%s (%s pretraining: %s)", origin, key, choice.dtype, choice.reason)
    return path, {"base_key": key, "base_origin": origin, "autocast": choice.dtype, "autocast_reason": choice.reason}


def load(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a base reference's path."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    return model, tokenizer


def run(call: StageCall) -> StageOutcome:
    """The base model: the pocket base (built once or shipped, then how it answers validation prompts),
    or a user's model recorded and hashed."""
    cfg, recipe = call.cfg, call.recipe
    model_path, task_data_ref = recipe.model.base, call.inputs["task_data"]

    def build(work: Path) -> StageResult:
        if model_path != "pocket":
            # A user's model: a local directory is hashed by content, a hub id by name.
            return StageResult(metrics={"model": model_path}, artifact=Path(model_path))
        path, how = pocket_base(cfg, recipe.data.template, held_out_prompts(task_data_ref), call.store, recipe.seed)
        model, tokenizer = load(path)
        # how the base answers, on validation prompts (what any choice of the world's design may read)
        metrics = pocket.base_report(model, tokenizer, list(load_split(task_data_ref, "validation")),
                                     recipe.data.template)
        metrics |= {"parameters": model.num_parameters(), **how}
        (work / EVAL_RESULTS).write_text(json.dumps(metrics, indent=2))
        return StageResult(metrics=metrics, artifact=path)

    # the pocket base is written to the shared cache (same disk); a user's model is only hashed
    return call.run(build, needs_bytes=pocket_bytes(cfg) if model_path == "pocket" else None)


def run_student(call: StageCall) -> StageOutcome:
    """The distillation student: a smaller pocket base built like the base, or a user's model."""
    cfg, recipe = call.cfg, call.recipe
    model_path, task_data_ref = recipe.distill.student_model, call.inputs["task_data"]

    def build(work: Path) -> StageResult:
        if model_path != "pocket":
            return StageResult(metrics={"model": model_path}, artifact=Path(model_path))
        path, how = pocket_base(cfg, recipe.data.template, held_out_prompts(task_data_ref), call.store, recipe.seed)
        return StageResult(metrics=how, artifact=path)

    return call.run(build, needs_bytes=pocket_bytes(cfg) if model_path == "pocket" else None)
