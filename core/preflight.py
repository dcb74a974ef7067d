"""Preflight: every check that can fail a run, done before any training and reported together.

Real runs last hours; a bad recipe value, a wrong model path or a prompt the model cannot hold
should fail in the first seconds, with every problem listed at once, not one per restart. The flows
call two functions (flows/tasks.py):

  * `check_recipe` right after the recipe loads (unknown keys, wrong types and num_generations that
    do not divide the generation batch already failed in `load_recipe`): unknown reward names and
    parameters, model paths that do not exist (core.plan.validate), models that are not causal LMs
    (core.modeling.check_causal_lm);
  * `check_prompt_lengths` once the task data is split and the base tokenizer exists (after the tasks
    stage for a user's model, after the base stage for the pocket world, whose tokenizer is built
    there): every rendered prompt plus the longest generation a stage allows must fit the model's
    context (max_position_embeddings).

Bad data rows (missing columns, empty lines, invalid UTF-8) fail in the tasks stage itself, with the
file and line (data/sources.py), before any model is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Recipe, RecipeError

log = logging.getLogger(__name__)


class PreflightError(RecipeError):
    """A recipe, model or data problem found before training; the message lists every one."""


def _fail(source: str, errors: list[str]) -> None:
    if errors:
        raise PreflightError(f"{source}: the run cannot start\n  " + "\n  ".join(errors))


# --- the recipe and its models -----------------------------------------------------------------


def check_recipe(recipe: Recipe, source: str = "<recipe>") -> list[str]:
    """Raise PreflightError listing every problem of the recipe and its model paths; return notes."""
    from core.modeling import ModelError, check_causal_lm
    from core.plan import validate

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
    _fail(source, errors)
    for note in notes:
        log.info("preflight note: %s", note)
    return notes


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
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_path))
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value, name
    return None, ""


def generation_budgets(recipe: Recipe) -> dict[str, list[tuple[str, int]]]:
    """split -> (recipe key, tokens generated after a prompt of that split) for every pipeline
    stage that generates from those prompts."""
    rs, ev = recipe.rejection_sampling, recipe.eval
    train = [("reasoning_rl.max_completion_length", recipe.reasoning_rl.max_completion_length),
             ("all_scenario_rl.max_completion_length", recipe.all_scenario_rl.max_completion_length),
             ("r1_zero.max_completion_length", recipe.r1_zero.max_completion_length),
             ("rejection_sampling.max_new_tokens", rs.max_new_tokens)]
    heldout = [("eval.max_new_tokens", ev.max_new_tokens),
               ("all_scenario_rl.max_completion_length", recipe.all_scenario_rl.max_completion_length)]
    if recipe.reasoning_rl.heldout_every:
        heldout.append(("reasoning_rl.max_completion_length", recipe.reasoning_rl.max_completion_length))
    return {"train": train, "heldout": heldout}


def longest_prompt(tokenizer: Any, rows: Any, template: Any, split: str) -> Longest | None:
    """The longest prompt of a task split as the model sees it (chat template applied)."""
    from data.chat import messages, render

    prompts = list(rows["prompt"])
    if not prompts:
        return None
    rendered = [render(tokenizer, messages(p, template)) for p in prompts]
    lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    return Longest(split, lengths[i], i, rows[i]["task"], prompts[i], tuple(lengths))


def check_prompt_lengths(recipe: Recipe, tasks_ref: Any, model_path: str | Path,
                         source: str = "<recipe>") -> dict[str, Any]:
    """Raise PreflightError when a training or held-out prompt plus the generation a stage allows
    exceeds the model's context; return the figures (longest prompt per split, context)."""
    from core.modeling import load_tokenizer
    from data.saved import load_split

    context, field = context_length(model_path)
    if context is None:
        log.warning("preflight: %s declares no context length; prompt lengths not checked", model_path)
        return {}
    try:
        tokenizer = load_tokenizer(model_path)
        found = {split: longest_prompt(tokenizer, load_split(tasks_ref, split), recipe.data.template, split)
                 for split in ("train", "heldout")}
    except ValueError as exc:  # e.g. a tokenizer without a chat template
        raise PreflightError(f"{source}: the run cannot start\n  model.base: {exc}") from None
    errors: list[str] = []
    figures: dict[str, Any] = {"context": context}
    for split, budgets in generation_budgets(recipe).items():
        longest = found[split]
        if longest is None:
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
