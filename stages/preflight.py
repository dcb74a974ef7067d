"""Preflight: every check that can fail a run, done before any training and reported together.

Real runs last hours; a bad recipe value, a wrong model path or a prompt the model cannot hold
should fail in the first seconds, with every problem listed at once, not one per restart. The flows
call two functions (flows/prefect_tasks.py), and `r1 dry-run` calls `validate`:

  * `check_recipe` right after the recipe loads (unknown keys, wrong types and num_generations that
    do not divide the generation batch already failed in `load_recipe`): unknown reward names and
    parameters, model paths that do not exist (`validate`), models that are not causal LMs
    (core.modeling.check_causal_lm);
  * `check_prompt_lengths` once the task data is split and the base tokenizer exists (after the
    task_data stage for a user's model, after the base stage for the pocket world, whose tokenizer is
    built there): every rendered prompt plus the longest generation a stage allows must fit the
    model's context (max_position_embeddings).

Which stages train with GRPO, generate from which prompts and how long: read from the stage graph
(stages/graph.py) and each stage's recipe section, never from a list of stage names. Bad data rows
(missing columns, empty lines, invalid UTF-8) fail in the task_data stage itself, with the file and
line (data/sources.py), before any model is loaded.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from transformers import AutoConfig

from core import distributed, vllm_server
from core.config import (
    FileSource,
    HubSource,
    Recipe,
    RecipeError,
    load_recipe,
)
from core.generation import vllm_unavailable
from core.modeling import ModelError, check_causal_lm, load_tokenizer
from core.stage import setting
from data.chat import messages, render
from data.saved import STRESS, has_split, load_split
from rewards import catalog
from stages import graph

log = logging.getLogger(__name__)


class PreflightError(RecipeError):
    """A recipe, model or data problem found before training; the message lists every one."""


def _fail(source: str, errors: list[str]) -> None:
    if errors:
        raise PreflightError(f"{source}: the run cannot start\n  " + "\n  ".join(errors))


# --- the recipe and its models -----------------------------------------------------------------

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def collects(recipe: Recipe) -> bool:
    """Whether the cold start is sampled (its collect settings are in use)."""
    return recipe.cold_start.source in ("r1_zero", "few_shot")


TRAINING = ("sft", "grpo", "reward_model")  # the kinds of stage that train with a TrainConfig section
SAMPLING = ("cold_start_data", "rejection_sampling")  # the kinds that sample a dataset (a SamplingConfig)


def sections(recipe: Recipe, *kinds: str) -> dict[str, Any]:
    """Recipe key -> section of every stage of the graph of these kinds (StageSpec.kind)."""
    return {s.section: setting(recipe, s.section) for s in graph.STAGES if s.section and s.kind in kinds}


def _model_check(path: str, key: str, errors: list[str], notes: list[str]) -> None:
    """A local model path must exist and hold a causal LM config; a hub id is noted (cached or not)."""
    if path == "pocket":
        return
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            errors.append(f"{key}: {path!r} is a local path without a config.json (expected an HF model directory)")
        return
    if path.startswith(("/", ".", "~")) or not HUB_ID.match(path):
        errors.append(f"{key}: local model path {path!r} does not exist (expected an HF model directory or a "
                      f"hub id like Qwen/Qwen2.5-0.5B-Instruct)")
        return
    cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
    where = "in the local HF cache" if cached else \
        "not cached here: downloaded on first use, which needs network (HF_HUB_OFFLINE=0)"
    notes.append(f"{key}: hub model {path!r} ({where})")


def _file_check(path: str | None, key: str, notes: list[str]) -> None:
    if path and not Path(path).expanduser().exists():
        notes.append(f"{key}: file {path!r} does not exist yet; create it before this stage runs")


def validate(recipe: Recipe, source: str = "<recipe>") -> list[str]:
    """Raise RecipeError listing every problem that would stop a run; return notes (things to know)."""
    errors: list[str] = []
    notes: list[str] = []
    grpo = sections(recipe, "grpo")
    for key, cfg in grpo.items():
        try:
            notes += [f"{key}.rewards: {note}" for note in catalog.validate(cfg.rewards)]
        except (KeyError, ValueError) as exc:
            errors.append(f"{key}.rewards: {exc}")
    _model_check(recipe.model.base, "model.base", errors, notes)
    _model_check(recipe.distill.student_model, "distill.student_model", errors, notes)
    for i, src in enumerate(recipe.data.sources):
        if isinstance(src, FileSource):
            _file_check(src.path, f"data.sources[{i}].path", notes)
        elif isinstance(src, HubSource):
            notes.append(f"data.sources[{i}]: hub dataset {src.name!r} ({src.subset or 'default'}/{src.split}) is "
                         "read at run time (needs network or the local datasets cache)")
    start = recipe.cold_start
    if recipe.model.base != "pocket" and start.source == "generated":
        errors.append("cold_start.source: generated exists for the pocket world only; a real model collects its "
                      "cold start (r1_zero, few_shot) or reads one (file, with cold_start.dataset)")
    if recipe.model.base != "pocket" and start.source == "few_shot" and not start.collect.exemplars:
        errors.append("cold_start.collect.exemplars: the few_shot source of a real model needs worked examples "
                      "({prompt, completion} rows)")
    if start.source == "r1_zero":
        where = f"run {start.collect.r1_zero_run}'s" if start.collect.r1_zero_run else "this run's (built first)"
        notes.append(f"cold_start.source: r1_zero: the cold start is collected from {where} R1-Zero adapter")
    _file_check(start.dataset, "cold_start.dataset", notes)
    _file_check(recipe.rejection_sampling.general_dataset, "rejection_sampling.general_dataset", notes)
    prefs = recipe.reward_model.dataset
    if prefs is not None and prefs.kind == "file":
        _file_check(prefs.path, "reward_model.dataset.path", notes)
    elif prefs is not None:
        notes.append(f"reward_model.dataset: hub dataset {prefs.name!r} ({prefs.subset or 'default'}/{prefs.split}) "
                     "is read at run time (needs network or the local datasets cache)")
    if any(cfg.use_vllm for cfg in grpo.values()) and (reason := workers_without_vllm(recipe)):
        notes.append(f"use_vllm: {reason}; GRPO rollouts will fall back to HF generate")
    elif any(vllm_server.uses_server(cfg) for cfg in grpo.values()):
        notes += [f"{key}.vllm_server: {found}" for key, _, found in server_findings(recipe)]
    if reason := vllm_unavailable():  # rejection sampling and collection sample in the pipeline's process
        for key, cfg in sections(recipe, *SAMPLING).items():
            if cfg.use_vllm and (key != "cold_start.collect" or collects(recipe)):
                notes.append(f"{key}.use_vllm: {reason}; sampling will fall back to batched HF generate")
    for key, names in (("stress_stages", recipe.eval.stress_stages or []), ("stage_samples", recipe.eval.stage_samples)):
        for name in names:
            if name not in graph.EVALUATED:
                errors.append(f"eval.{key}: {name!r} is not an evaluated stage (one of {', '.join(graph.EVALUATED)})")
    machines = recipe.distributed.num_machines
    for key, cfg in sections(recipe, *TRAINING).items():
        if machines > 1 and cfg.num_processes > 1 and cfg.num_processes % machines:
            errors.append(f"{key}.num_processes: {cfg.num_processes} processes do not divide over "
                          f"distributed.num_machines {machines} (every machine runs the same number)")
    bf16 = [c.bf16 for c in sections(recipe, *TRAINING).values()]
    if any(bf16) and not torch.cuda.is_available():
        notes.append("bf16: true but no CUDA GPU here; a CPU run would need bf16: false")
    if errors:
        raise RecipeError(f"{source}: the recipe cannot run\n  " + "\n  ".join(errors))
    return notes


def workers_without_vllm(recipe: Recipe) -> str | None:
    """Why the training processes cannot use vLLM (None: they can). They run in the GPU workers'
    environment when one is set ($R1_WORKER_PYTHON, distributed.python), else in this process."""
    python = distributed.worker_python(recipe.distributed)
    return vllm_server.vllm_missing(python if distributed.should_launch_python(python) else None)


def server_findings(recipe: Recipe) -> list[tuple[str, bool, str]]:
    """(recipe key, ok, what was found) for every GRPO stage that generates on a vLLM server: does it
    answer, and does it serve the base (a pocket base is built in the run: any model is taken)."""
    base = None if recipe.model.base == "pocket" else recipe.model.base
    return [(key, *vllm_server.check(cfg.vllm_server, base)) if cfg.vllm_server.preflight else
            (key, True, "not checked before the run (preflight: false): the stage's job starts it and sets "
             f"${vllm_server.URL_ENV}")
            for key, cfg in sections(recipe, "grpo").items() if vllm_server.uses_server(cfg)]


def check_recipe(recipe: Recipe, source: str = "<recipe>") -> list[str]:
    """Raise PreflightError listing every problem of the recipe and its model paths; return notes."""
    errors: list[str] = []
    notes: list[str] = []
    try:
        notes = validate(recipe, source)  # reward names and params (rewards.registry), model paths, files
    except RecipeError as exc:
        errors += [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    for key, path in (("model.base", recipe.model.base), ("distill.student_model", recipe.distill.student_model)):
        if path == "pocket" or any(e.startswith(f"{key}:") for e in errors):
            continue
        try:
            check_causal_lm(path)
        except ModelError as exc:
            errors.append(f"{key}: {exc}")
    if any(vllm_server.uses_server(cfg) for cfg in sections(recipe, "grpo").values()) \
            and not workers_without_vllm(recipe):
        # a stage would wait `timeout` seconds for a server that is not there, hours into the run
        errors += [f"{key}.vllm_server: {found}" for key, ok, found in server_findings(recipe) if not ok]
    _fail(source, errors)
    for note in notes:
        log.info("preflight note: %s", note)
    return notes


def load_checked(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """The one way a run gets its recipe: loaded, overrides applied, validated (load_recipe), then
    checked (`check_recipe`), so a bad recipe fails before any run directory or server exists."""
    recipe = load_recipe(path, overrides or [])
    check_recipe(recipe, str(path))
    return recipe


# --- prompt lengths ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Longest:
    """The longest rendered prompt of a split."""

    split: str
    tokens: int
    row: int
    task: str
    prompt: str
    lengths: tuple[int, ...]  # every prompt's length, in row order

    def over(self, limit: int) -> int:
        return sum(n > limit for n in self.lengths)


def context_length(model_path: str | Path) -> tuple[int | None, str]:
    """(the model's context in tokens, the config field it came from); (None, '') when it has none."""
    config = AutoConfig.from_pretrained(str(model_path))
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value, name
    return None, ""


def generation_budgets(recipe: Recipe) -> dict[str, list[tuple[str, int]]]:
    """split -> (recipe key, tokens generated after a prompt of that split) for every stage on the base
    model that generates from those prompts: GRPO rollouts and rejection sampling from training
    prompts; validation probes and the reward-hacking guard from validation ones; evaluation from
    test and stress ones."""
    budgets: dict[str, list[tuple[str, int]]] = {"train": [], "validation": []}
    for spec in graph.built_on(graph.BASE):
        cfg = setting(recipe, spec.section) if spec.section else None
        if spec.kind == "grpo":
            budgets["train"].append((f"{spec.section}.max_completion_length", cfg.max_completion_length))
            if cfg.validation_every or cfg.guard is not None:
                budgets["validation"].append((f"{spec.section}.max_completion_length", cfg.max_completion_length))
        elif spec.kind in SAMPLING and (spec.kind != "cold_start_data" or collects(recipe)):
            budgets["train"].append((f"{spec.section}.max_new_tokens", cfg.max_new_tokens))
    for split in ("test", *STRESS):
        budgets[split] = [("eval.max_new_tokens", recipe.eval.max_new_tokens)]
    return budgets


def longest_prompt(tokenizer: Any, rows: Any, template: Any, split: str) -> Longest | None:
    """The longest prompt of a task split as the model sees it (chat template applied)."""
    prompts = list(rows["prompt"])
    if not prompts:
        return None
    rendered = [render(tokenizer, messages(p, template)) for p in prompts]
    lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    return Longest(split, lengths[i], i, rows[i]["task"], prompts[i], tuple(lengths))


def check_prompt_lengths(recipe: Recipe, task_data_ref: Any, model_path: str | Path,
                         source: str = "<recipe>") -> dict[str, Any]:
    """Raise PreflightError when a prompt of any split plus the generation a stage allows
    exceeds the model's context; return the figures (longest prompt per split, context)."""
    context, field = context_length(model_path)
    if context is None:
        log.warning("preflight: %s declares no context length; prompt lengths not checked", model_path)
        return {}
    try:
        tokenizer = load_tokenizer(model_path)
        found = {split: longest_prompt(tokenizer, load_split(task_data_ref, split), recipe.data.template, split)
                 for split in ("train", "validation", "test", *STRESS) if has_split(task_data_ref, split)}
    except ValueError as exc:  # e.g. a tokenizer without a chat template
        raise PreflightError(f"{source}: the run cannot start\n  model.base: {exc}") from None
    errors: list[str] = []
    figures: dict[str, Any] = {"context": context}
    for split, budgets in generation_budgets(recipe).items():
        longest = found.get(split)
        if longest is None or not budgets:
            continue
        figures[f"longest_{split}_prompt_tokens"] = longest.tokens
        key, budget = max(budgets, key=lambda kb: kb[1])
        limit = context - budget
        if longest.tokens > limit:
            errors.append(
                f"data: {longest.over(limit)} of {len(longest.lengths)} {split} prompts are too long: the longest "
                f"({split} row {longest.row}, task {longest.task!r}: {longest.prompt[:60]!r}...) is {longest.tokens} "
                f"tokens with the chat template; {field} {context} of {model_path} minus {key}={budget} leaves "
                f"{limit}; expected every prompt <= {limit} tokens: shorten or drop such rows, or lower {key}")
    _fail(source, errors)
    log.info("preflight: prompts fit (%s)", figures)
    return figures
