"""Where a pocket GRPO step's time goes, and how far it is from its floor.

    python -m bench.grpo_profile [--recipe configs/pocket.yaml] [--stage r1_zero] [--steps 6] [--set KEY=VALUE]
                                 [--adapter runs/<id>/r1_zero/adapter]

A GRPO step's cost depends on how long the policy writes: a fresh adapter on the pocket base answers
in a few tokens, R1-Zero's final one in over a hundred. `--adapter` starts from a trained adapter
(the steady state of a run) instead of a fresh one (its first steps).

Trains the stage's GRPO (TRL's GRPOTrainer as core/trainers.py builds it: the recipe's rewards and
monitors, rollouts on the merged adapter) for a few steps on the recipe's base, with a stopwatch on
each part of a step: generation (the rollouts), reward scoring, log-probs outside the loss (old /
reference policy, when the recipe needs them), the loss's forward, its backward, the optimizer, and
the rest (TRL's bookkeeping, logging, callbacks, data collation). The first step is left out (it
allocates and picks kernels).

The floor is the step's arithmetic at this machine's matmul throughput: the FLOPs of the rollouts
(2 x weights per generated token, plus attention over the cache) and of the update (forward and
backward through the frozen weights, 4 x weights per token, plus attention), divided by the GFLOP/s
a large float32 matmul reaches on this process's threads. Writes bench/results/grpo_profile.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from bench.common import RESULTS
from core import machine
from core.config import load_recipe
from core.modeling import load_tokenizer, stop_token_ids, trainable_model
from core.runstore import RunStore
from core.trainers import MergedRolloutGRPOTrainer, grpo_args
from data.chat import render
from rewards.routing import grpo_rewards
from stages import graph, grpo, runner

PARTS = ("generation", "rewards", "logprobs", "loss_forward", "backward", "optimizer", "other")


class Stopwatch(TrainerCallback):
    """Seconds per part of every optimizer step (wrappers add to `current`; callbacks close a step)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self.completion_tokens: list[int] = []
        self._step_t0 = self._opt_t0 = 0.0

    def wrap(self, obj: Any, name: str, part: str) -> None:
        original = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[part] += time.perf_counter() - t0

        setattr(obj, name, timed)

    def on_step_begin(self, args, state, control, **kwargs):
        self.current.clear()
        self._step_t0 = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._opt_t0 = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.current["optimizer"] += time.perf_counter() - self._opt_t0

    def on_step_end(self, args, state, control, **kwargs):
        total = time.perf_counter() - self._step_t0
        step = dict(self.current)
        # the loss's forward includes its log-probs; log-probs outside it are the old / reference policy's
        step["loss_forward"] = step.get("compute_loss", 0.0)
        step["logprobs"] = max(0.0, step.get("all_logprobs", 0.0) - step.get("loss_logprobs", 0.0))
        step["other"] = total - sum(step.get(p, 0.0) for p in PARTS if p != "other")
        self.steps.append({"total": total, **{p: step.get(p, 0.0) for p in PARTS}})


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """What a large float32 matmul reaches on this process's threads (GFLOP/s, best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_flops(config: Any, completions: int, prompt_tokens: float, completion_tokens: float) -> dict[str, float]:
    """FLOPs of one GRPO step: the rollouts (prefill, then one token at a time over a growing cache) and
    the update (forward and backward through the frozen weights) of `completions` sequences."""
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = h * config.num_key_value_heads // config.num_attention_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size  # q, o; k, v; gate, up, down
    weights = layers * per_layer + h * config.vocab_size  # the tied LM head
    seq = prompt_tokens + completion_tokens
    # attention: scores and weighted sum, 4 * h flops per (query, key) pair per layer
    gen_attention = layers * 4 * h * (prompt_tokens ** 2 / 2 + completion_tokens * (prompt_tokens + completion_tokens / 2))
    generation = completions * (2 * weights * seq + gen_attention)
    update = completions * 2 * (2 * weights * seq + layers * 4 * h * seq ** 2 / 2)  # forward + backward (x2 of it)
    return {"generation": generation, "update": update, "total": generation + update}


def profile(recipe_path: str, stage: str, steps: int, overrides: list[str], adapter: Path | None = None
            ) -> dict[str, Any]:
    machine.use_own_cores()
    recipe = load_recipe(recipe_path, overrides)
    cfg = getattr(recipe, stage)
    store = RunStore()
    run_id = store.new_run_id(f"bench-profile-{recipe.name}")
    refs = runner.build([graph.BASE], recipe, store, run_id)
    base = refs[graph.BASE].path
    tokenizer = load_tokenizer(base, recipe.model.eos_token)
    model = trainable_model(base, adapter, recipe.model.lora, recipe.model.dtype, recipe.seed)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    data = grpo.training_prompts(cfg, recipe, refs[graph.TASK_DATA])
    funcs, weights = grpo_rewards(cfg.rewards)
    work = store.root / run_id / f".profile-{stage}"
    cfg = cfg.model_copy(update={"steps": steps + 1, "save_steps": 10 ** 6})
    args = grpo_args(cfg, work, recipe.seed, weights, "none", stop_token_ids(tokenizer, model))
    watch = Stopwatch()
    trainer = MergedRolloutGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=data,
                                       processing_class=tokenizer, callbacks=[watch])
    watch.wrap(trainer, "_generate_single_turn", "generation")
    watch.wrap(trainer, "_calculate_rewards", "rewards")
    watch.wrap(trainer, "_get_per_token_logps_and_entropies", "all_logprobs")
    watch.wrap(trainer, "compute_loss", "compute_loss")
    watch.wrap(trainer.accelerator, "backward", "backward")
    # log-probs computed inside the loss count as the loss's forward
    original_loss = trainer.compute_loss

    def loss_with_logprobs(*a: Any, **k: Any) -> Any:
        before = watch.current["all_logprobs"]
        try:
            return original_loss(*a, **k)
        finally:
            watch.current["loss_logprobs"] += watch.current["all_logprobs"] - before

    trainer.compute_loss = loss_with_logprobs
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    history = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    measured = watch.steps[1:]  # the first step allocates and picks kernels
    mean = {k: statistics.fmean(s[k] for s in measured) for k in ("total", *PARTS)}
    prompt_tokens = statistics.fmean(len(tokenizer(render(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"])
                                     for row in data.select(range(64)))
    completion_tokens = statistics.fmean(h["completions/mean_length"] for h in history[1:])
    completions = cfg.batch_size * cfg.gradient_accumulation_steps
    flops = step_flops(model.config, completions, prompt_tokens, completion_tokens)
    gflops = matmul_gflops()
    floor = flops["total"] / (gflops * 1e9)
    return {"recipe": recipe.name, "stage": stage, "adapter": str(adapter) if adapter else None,
            "steps_measured": len(measured), "wall_s": round(wall, 1),
            "machine": machine.machine(), "completions_per_step": completions,
            "mean_prompt_tokens": round(prompt_tokens, 1), "mean_completion_tokens": round(completion_tokens, 1),
            "seconds": {k: round(v, 3) for k, v in mean.items()},
            "shares": {p: round(mean[p] / mean["total"], 3) for p in PARTS},
            "flops": {k: round(v / 1e9, 2) for k, v in flops.items()}, "gflops_matmul": round(gflops, 1),
            "floor_s": round(floor, 3), "arithmetic_share": round(floor / mean["total"], 3)}


def table(result: dict[str, Any]) -> str:
    s, shares = result["seconds"], result["shares"]
    start = f"from {result['adapter']}" if result.get("adapter") else "from a fresh adapter"
    lines = [f"{result['stage']} of {result['recipe']} ({start}): {result['completions_per_step']} completions a step, "
             f"{result['mean_prompt_tokens']} prompt + {result['mean_completion_tokens']} completion tokens; "
             f"mean of {result['steps_measured']} steps",
             "| part | s a step | share |", "|---|---:|---:|"]
    lines += [f"| {p} | {s[p]:.3f} | {shares[p]:.0%} |" for p in PARTS]
    lines += [f"| step | {s['total']:.3f} | 100% |", "",
              f"floor: {result['flops']['total']} GFLOP ({result['flops']['generation']} rollouts, "
              f"{result['flops']['update']} update) at {result['gflops_matmul']} GFLOP/s (a 1024^3 float32 matmul on "
              f"{result['machine']['threads']} thread(s)) = {result['floor_s']:.3f} s; arithmetic share of the step "
              f"{result['arithmetic_share']:.1%}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="configs/pocket.yaml")
    p.add_argument("--stage", default="r1_zero", help="a GRPO stage's recipe section (default: %(default)s)")
    p.add_argument("--steps", type=int, default=6, help="steps measured (one more runs first, unmeasured)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--adapter", type=Path, help="start from this trained LoRA adapter (a stage's adapter/ directory) "
                   "instead of a fresh one: the steady state of a run rather than its first steps")
    p.add_argument("--out", default=str(RESULTS / "grpo_profile.json"))
    args = p.parse_args(argv)
    if args.adapter is not None and not (args.adapter / "adapter_config.json").is_file():
        p.error(f"--adapter {args.adapter}: expected a PEFT adapter directory (with adapter_config.json)")
    result = profile(args.recipe, args.stage, args.steps, args.overrides, args.adapter)
    print(table(result))
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
