"""Time shown, not guessed: before a run, an estimated wall per stage from a few operations timed on
this machine.

Three costs are measured on a model of the recipe's base shapes (the pocket config's; a real model's
run is not estimated: its time is the GPU's): a decode step of a batch (the sampler the stages use),
one forward and backward of a batch with a LoRA adapter, and one pretraining step. A stage's estimate
is how many of each it does (from its recipe section, as the plan counts them) times their cost.
Completion lengths are unknown before sampling, and a batch decodes until its longest completion
ends, so a batch is taken to run to its length cap; training sequences to half of it. The measured
walls land in each stage's manifest and in the run report beside these estimates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from core.runstore import RunStore
from core.stage import setting
from stages import graph

DECODE_BATCH, TRAIN_BATCH, TRAIN_TOKENS, PROMPT_TOKENS = 64, 64, 96, 32


@dataclass(frozen=True)
class Costs:
    """Seconds per operation on this machine."""

    decode_step: float  # one step of a batch of DECODE_BATCH sequences
    train_step_per_token: float  # forward + backward with a LoRA adapter, per token of the batch
    pretrain_step: float  # one pretraining step of the base


def _best(fn: Any, repeats: int = 2) -> float:
    fn()  # the first call allocates and picks kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def calibrate(recipe: Any) -> Costs | None:
    """The three costs for the recipe's pocket base shapes; None for a real model."""
    if recipe.model.base != "pocket":
        return None
    import peft
    from transformers import Qwen2Config, Qwen2ForCausalLM

    import pocket
    from core import decoding

    cfg = recipe.model.pocket
    config = Qwen2Config(vocab_size=cfg.vocab_size + 7, hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    ids = torch.randint(cfg.vocab_size, (DECODE_BATCH, PROMPT_TOKENS))
    steps = 16
    decode = _best(lambda: decoding.sample(model, ids, torch.ones_like(ids), max_new_tokens=steps, temperature=1.0,
                                           top_p=1.0, stop_ids=[], pad_id=0)) / steps
    lora = recipe.model.lora
    trained = peft.get_peft_model(model, peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha,
                                                         target_modules=lora.target_modules))
    batch = torch.randint(cfg.vocab_size, (TRAIN_BATCH, TRAIN_TOKENS))

    def train_step() -> None:
        trained(input_ids=batch, labels=batch).loss.backward()
        trained.zero_grad(set_to_none=True)

    train = _best(train_step) / (TRAIN_BATCH * TRAIN_TOKENS)
    dtype = pocket.compute_dtype(cfg).dtype if cfg.autocast != "auto" else "float32"
    pretrain = _best(lambda: pocket.probe_step(cfg)(dtype), repeats=1)
    return Costs(decode, train, pretrain)


def _decode(costs: Costs, completions: int, cap: int, batch: int) -> float:
    """Decoding `completions` in batches of `batch` (each to the cap): a step of a batch costs as one
    of DECODE_BATCH does (it is overhead, not arithmetic, at these sizes) scaled by its size past it."""
    batches = -(-completions // batch)
    return batches * cap * costs.decode_step * max(1.0, batch / DECODE_BATCH) ** 0.5


BASE_REPORT_S = 20.0  # the base stage's own report (sampling the base on validation prompts)


def stage_seconds(spec: Any, recipe: Any, costs: Costs) -> float:
    """The estimated wall of one stage built from scratch."""
    cfg = setting(recipe, spec.section) if spec.section else None
    kind = spec.kind
    if kind == "base":
        return cfg.steps * costs.pretrain_step + BASE_REPORT_S
    if kind == "grpo":
        per_step = cfg.batch_size * cfg.gradient_accumulation_steps
        gen = _decode(costs, per_step, cfg.max_completion_length, per_step)
        tokens = per_step * (PROMPT_TOKENS + cfg.max_completion_length / 2)
        probes = (cfg.steps // (cfg.guard.every if cfg.guard else cfg.validation_every or cfg.steps) + 2
                  if cfg.guard or cfg.validation_every else 0)
        prompts = cfg.guard.prompts if cfg.guard else cfg.validation_prompts
        return cfg.steps * (gen + tokens * costs.train_step_per_token) + \
            probes * _decode(costs, prompts, cfg.max_completion_length, prompts)
    if kind == "sft":
        return cfg.steps * cfg.batch_size * (PROMPT_TOKENS + 80) * costs.train_step_per_token
    if kind == "reward_model":
        return cfg.steps * cfg.batch_size * 2 * 64 * costs.train_step_per_token * 3  # a full fine-tune
    if kind in ("rejection_sampling", "cold_start_data"):
        c = cfg if kind == "rejection_sampling" else recipe.cold_start.collect
        if kind == "cold_start_data" and recipe.cold_start.source not in ("r1_zero", "few_shot"):
            return 1.0
        return _decode(costs, c.prompts * c.samples_per_prompt, c.max_new_tokens, c.batch_size)
    if kind == "evaluation":
        ev = recipe.eval
        k = ev.stage_samples.get(spec.name.removeprefix("eval_"), ev.samples)
        prompts = min(ev.prompts or recipe.data.test_size, recipe.data.test_size)
        stress = 0
        if ev.stress_stages is None or spec.name.removeprefix("eval_") in ev.stress_stages:
            stress = sum(min(ev.stress_prompts or 10 ** 9, sum(s.size for s in getattr(recipe.data, split)
                                                                 if hasattr(s, "size")))
                         for split in ("transfer", "longer"))
        return _decode(costs, (prompts + stress) * k, ev.max_new_tokens, ev.batch_size) + \
            _decode(costs, prompts + stress, ev.max_new_tokens, ev.batch_size)
    return 1.0


def bases_ready(recipe: Any, store: RunStore) -> dict[str, str]:
    """base stage -> 'shipped' or 'cached' for each pocket base that needs no pretraining here (the
    task data is split in memory to know which prompts its corpus leaves out)."""
    from data.saved import STRESS
    from stages import base, task_data

    seed = recipe.seed if recipe.data.seed is None else recipe.data.seed
    parts = task_data.splits(recipe.data, seed)
    held = [r["prompt"] for split in ("validation", "test", *STRESS) for r in parts.get(split, [])]
    out = {}
    for stage, model, cfg in ((graph.BASE, recipe.model.base, recipe.model.pocket),
                              ("student_base", recipe.distill.student_model, recipe.distill.student)):
        if model == "pocket" and (how := base.ready(cfg, recipe.data.template, held, store, recipe.seed)):
            out[stage] = how
    return out


def estimates(flow: Any, recipe: Any, costs: Costs, store: RunStore, run_id: str | None
              ) -> list[tuple[str, float, str]]:
    """(stage, estimated seconds, note) for every stage a flow runs with this recipe, evaluations
    last: a stage already finished in the run (`run_id`) is 0 ('reused'), a pocket base the project
    ships or the cache holds costs only its report."""
    finished = {m["stage"] for m in store.stages(run_id)} if run_id else set()
    ready = bases_ready(recipe, store)
    specs = graph.flow_stages(flow, recipe) + [graph.evaluation_of(s) for s in graph.flow_evaluations(flow, recipe)]
    out = []
    for s in specs:
        if s.name in finished:
            out.append((s.name, 0.0, "reused"))
        elif s.name in ready:
            out.append((s.name, BASE_REPORT_S, ready[s.name]))
        else:
            out.append((s.name, stage_seconds(s, recipe, costs), ""))
    return out


def format_estimates(rows: list[tuple[str, float, str]], costs: Costs, machine: dict[str, Any]) -> str:
    total = sum(s for _, s, _ in rows)
    lines = [f"estimated walls on this machine ({machine['cpu']}, {machine['capability']}, {machine['threads']} "
             f"thread(s); a decode step of {DECODE_BATCH} sequences {costs.decode_step * 1e3:.1f} ms, a training "
             f"token {costs.train_step_per_token * 1e6:.0f} us, a pretraining step {costs.pretrain_step:.2f} s):"]
    lines += [f"  {name:24} {f'~{s / 60:4.1f} min':>10}  {note}" for name, s, note in rows]
    lines.append(f"  {'total':24} {f'~{total / 60:4.1f} min':>10}")
    return "\n".join(lines)
