"""Stage 1a, the cold-start set (`cold_start.source`): the pocket world's generated solutions, the
user's file, or collected the paper's way: k completions per training prompt sampled from this (or
a given) run's R1-Zero adapter (`r1_zero`) or from the base prompted with long worked examples
(`few_shot`), then kept only when verified and readable, rewritten into the readable format,
deduplicated and capped (data/cold_start.py). The manifest counts what each filter removed; the
rows carry the gold answer, so anyone can re-verify them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

import pocket
from core.layout import DATASET
from core.modeling import load_tokenizer
from core.runstore import Ref, StageOutcome, StageResult
from core.stage import StageCall
from data.chat import messages, render
from data.cold_start import REMOVED, collect, few_shot_messages, file_conversations
from data.saved import load_split
from rewards.completions import think_prefilled
from stages import sampling


def r1_zero_adapter(call: StageCall) -> Ref:
    """The R1-Zero adapter to collect from: this run's (an input) or the run named in the recipe."""
    run = call.cfg.r1_zero_run
    if not run:
        return call.inputs["r1_zero"]
    ref = call.store.ref(run, "r1_zero")
    if ref is None:
        raise ValueError(f"cold_start.collect.r1_zero_run: run {run!r} has no finished r1_zero stage in "
                         f"{call.store.root} (build it with the r1-zero flow and that run id, or leave the setting "
                         "unset to build one in this run)")
    return ref


def run(call: StageCall) -> StageOutcome:
    recipe = call.recipe
    start = recipe.cold_start
    task_data_ref, base_ref = call.inputs["task_data"], call.inputs["base"]
    template = recipe.data.template
    adapter_ref = r1_zero_adapter(call) if start.source == "r1_zero" else None
    inputs = {"task_data": task_data_ref, "base": base_ref} | ({"r1_zero": adapter_ref} if adapter_ref else {})

    def build(work: Path) -> StageResult:
        if start.source == "file":
            data = file_conversations(start.dataset, template)
            metrics: dict[str, Any] = {}
        elif start.source == "generated":
            data = pocket.cold_start_rows(load_split(task_data_ref, "train"), start.examples, recipe.seed, template)
            metrics = {}
        else:
            data, metrics = collected(call, task_data_ref, base_ref, adapter_ref)
        data.save_to_disk(str(work / DATASET))
        return StageResult(metrics={"source": start.source, **metrics, "examples": len(data)})

    return call.run(build, inputs=inputs)


def collected(call: StageCall, task_data_ref: Ref, base_ref: Ref,
              adapter_ref: Ref | None) -> tuple[datasets.Dataset, dict[str, Any]]:
    cfg, recipe = call.cfg, call.recipe
    start, template = recipe.cold_start, recipe.data.template
    train = load_split(task_data_ref, "train").shuffle(seed=recipe.seed)
    rows = list(train.select(range(min(cfg.prompts, len(train)))))
    if start.source == "few_shot":
        exemplars = cfg.exemplars or (pocket.exemplars() if recipe.model.base == "pocket" else None)
        if not exemplars:
            raise ValueError("cold_start.collect.exemplars: the few_shot source of a real model needs worked "
                             "examples ({prompt, completion} rows) in the recipe")
        conversations = [few_shot_messages(r["prompt"], exemplars, template) for r in rows]
    else:
        conversations = [messages(r["prompt"], template) for r in rows]
    tokenizer = load_tokenizer(base_ref.path, recipe.model.eos_token)
    rendered = [render(tokenizer, c) for c in conversations]
    prefilled = [think_prefilled(r) for r in rendered]
    sampler, samples = sampling.sample_isolated(cfg, "cold_start.collect", base_ref, adapter_ref, rendered,
                                                model=recipe.model, seed=recipe.seed,
                                                desc=f"collecting the cold start ({start.source})")
    kept, removed = collect(rows, samples, cfg, start.examples, recipe.data.language, template, recipe.seed,
                            start.source, prefilled)
    if not kept:
        raise ValueError(f"cold_start.source {start.source}: no sampled completion was both verified and readable "
                         f"({dict(removed)}); sample more (cold_start.collect.prompts / samples_per_prompt) or "
                         "use another source")
    metrics = {"prompts": len(rows), "sampler": sampler, "sampled": sum(len(s) for s in samples),
               **{f"removed_{k}": removed.get(k, 0) for k in REMOVED},
               "prompts_with_a_kept_sample": len({r["prompt"][-1]["content"] for r in kept}),
               "mean_kept_tokens": sum(len(tokenizer(r["completion"][0]["content"])["input_ids"]) for r in kept)
               / len(kept)}
    return datasets.Dataset.from_list(kept), metrics
