"""Benchmark: our reasoning-RL stage against a plain TRL GRPOTrainer script, side by side.

Run:  .venv/bin/python -m bench.grpo_overhead
Same pocket base, same training prompts, same GRPOConfig knobs, same steps and seed, both starting
from a fresh LoRA adapter; one process, interleaved (ours, plain, ours, plain, ...), ratio of the
median wall times. "Ours" is the whole stage as the pipeline runs it (stages/grpo.py: run store,
manifest and hashing, reward registry with its safety wrapper, logged monitors) with the recipe's
rewards cut to accuracy; "plain" is what a user would write with TRL alone: GRPOTrainer +
peft_config + an accuracy reward calling the same verifier, then save the adapter. W&B is off for both (a tracking run
costs the same whichever code opens it). Target: ratio at most 1.05.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["WANDB_MODE"] = "disabled"  # see the docstring: tracking is not what is compared

from bench.common import RESULTS, pocket_inputs  # noqa: E402

STEPS = 8
REPEATS = 3
OVERRIDES = [f"reasoning_rl.steps={STEPS}", "reasoning_rl.rewards=[{name: accuracy}]",
             "reasoning_rl.save_steps=1000", "reasoning_rl.prompts=256", "reasoning_rl.max_completion_length=96"]


def plain_accuracy(completions: list[Any], answer: list[str], task: list[str], metadata: list[str],
                   **_: Any) -> list[float]:
    """The plain script's reward: the project's verifier called directly (no registry, safety wrapper
    or monitors), so both runs see the same rewards and follow the same trajectory."""
    from rewards.accuracy import score_completion

    return [score_completion(c[0]["content"] if isinstance(c, list) else c, gold, t, m) or 0.0
            for c, gold, t, m in zip(completions, answer, task, metadata, strict=True)]


def plain_run(recipe: Any, base: str, dataset: Any, out: Path) -> float:
    """The plain TRL script: GRPOTrainer + peft_config, every knob written out by hand."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    cfg, lora = recipe.reasoning_rl, recipe.model.lora
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(out), max_steps=cfg.steps, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_steps, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, seed=recipe.seed, data_seed=recipe.seed,
        bf16=False, use_cpu=not torch.cuda.is_available(),
        report_to="none", dataloader_num_workers=0, num_generations=cfg.num_generations, beta=cfg.beta,
        loss_type=cfg.loss_type, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
        scale_rewards=cfg.scale_rewards, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, top_p=cfg.top_p, lr_scheduler_type="constant", shuffle_dataset=True,
        gradient_checkpointing=False, disable_tqdm=False,
    )
    check_same_knobs(args, recipe, out)
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=plain_accuracy, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    trainer.save_model(str(out / "adapter"))
    return time.perf_counter() - t0


def check_same_knobs(plain: Any, recipe: Any, out: Path) -> None:
    """Fail unless the plain script's GRPOConfig equals the one our stage builds, field by field
    (apart from where it writes and the reward weights: ours adds zero-weight monitors)."""
    from core.trainers import grpo_args

    ours = grpo_args(recipe.reasoning_rl, out, recipe.seed, [1.0], report_to="none").to_dict()
    skip = {"output_dir", "logging_dir", "run_name", "reward_weights"}
    differ = {k: (v, ours.get(k)) for k, v in plain.to_dict().items() if k not in skip and ours.get(k) != v}
    if differ:
        raise SystemExit(f"the plain script's GRPOConfig differs from ours: {differ}")


def ours_run(recipe: Any, store: Any, task_data_ref: Any, base_ref: Any) -> float:
    """The reasoning-RL stage from a fresh adapter (no cold start: the plain script has none either)."""
    from core.stage import StageCall
    from stages import graph

    spec = graph.BY_NAME["reasoning_rl"]
    run_id = store.new_run_id("bench-grpo-ours")
    t0 = time.perf_counter()
    spec.run(StageCall(spec, recipe, store, run_id, {"task_data": task_data_ref, "base": base_ref}))
    return time.perf_counter() - t0


def cpu_seconds() -> float:
    """This process's CPU time (user + system): a second figure that other jobs on a shared host
    disturb far less than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Any, *args: Any) -> tuple[float, float]:
    c0 = cpu_seconds()
    wall = run(*args)
    return wall, cpu_seconds() - c0


def main() -> dict[str, Any]:
    from data.chat import prompt_dataset
    from data.saved import load_split

    logging.basicConfig(level=logging.WARNING)
    recipe, store, _, task_data_ref, base_ref = pocket_inputs(OVERRIDES)
    cfg = recipe.reasoning_rl
    # The very rows our stage trains on (same limit, same shuffle).
    dataset = prompt_dataset(load_split(task_data_ref, "train"), recipe.data.template, cfg.prompts, recipe.seed)
    ours, plain, ours_cpu, plain_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # One untimed step of each first: imports and first-call costs (TRL, the reward registry,
        # reasoning-gym's scorer) would otherwise land on whichever runs first.
        warm = recipe.model_copy(update={"reasoning_rl": cfg.model_copy(update={"steps": 1})})
        ours_run(warm, store, task_data_ref, base_ref)
        plain_run(warm, base_ref.path, dataset, Path(tmp) / "plain-warmup")
        for i in range(REPEATS):
            wall, cpu = timed(ours_run, recipe, store, task_data_ref, base_ref)
            ours.append(wall)
            ours_cpu.append(cpu)
            wall, cpu = timed(plain_run, recipe, base_ref.path, dataset, Path(tmp) / f"plain-{i}")
            plain.append(wall)
            plain_cpu.append(cpu)
            print(f"round {i + 1}: ours {ours[-1]:.1f} s ({ours_cpu[-1]:.1f} s CPU), plain TRL {plain[-1]:.1f} s "
                  f"({plain_cpu[-1]:.1f} s CPU)", flush=True)
    ratio = statistics.median(ours) / statistics.median(plain)
    cpu_ratio = statistics.median(ours_cpu) / statistics.median(plain_cpu)
    result = {"grpo_overhead_ratio": round(ratio, 3), "grpo_overhead_cpu_ratio": round(cpu_ratio, 3),
              "ours_s": [round(t, 2) for t in ours], "plain_s": [round(t, 2) for t in plain],
              "ours_cpu_s": [round(t, 2) for t in ours_cpu], "plain_cpu_s": [round(t, 2) for t in plain_cpu], "steps": cfg.steps, "repeats": REPEATS,
              "completions_per_step": cfg.batch_size * cfg.gradient_accumulation_steps,
              "max_completion_length": cfg.max_completion_length}
    print(f"GRPO overhead: ours / plain TRL = {ratio:.3f} wall, {cpu_ratio:.3f} CPU time (medians of {REPEATS}; "
          f"target <= 1.05)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpo_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
