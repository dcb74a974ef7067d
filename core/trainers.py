"""Recipe configs mapped to TRL's trainers: SFT and GRPO on a LoRA adapter (TRL + PEFT).

Both read a stage config, resume from the last trainer checkpoint in <work>/checkpoints when a
killed attempt left one, save the adapter to <work>/adapter and the trainer's log history to
<work>/log_history.json (what the run report plots), and return summary metrics. With a stage's
`num_processes` above 1 they train under `accelerate launch` (core/distributed.py). What a GRPO
stage rewards is the stage's business: it passes the reward functions in (rewards/routing.py).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from peft import PeftModel
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from core import devices, distributed, tracking, vllm_server
from core.config import GRPOStageConfig, LoraSettings, SFTStageConfig, TrainConfig
from core.generation import vllm_usable
from core.modeling import ADAPTER, load_tokenizer, stop_token_ids, trainable_model
from core.runstore import CHECKPOINTS

log = logging.getLogger(__name__)
LOG_HISTORY = "log_history.json"


def _common_args(cfg: TrainConfig, work: Path, seed: int, report_to: str | list[str] | None) -> dict[str, Any]:
    if report_to is None:  # the stage's W&B run, when the run store opened one (TRL logs into it)
        report_to = tracking.report_to()
    return {
        "output_dir": str(work / CHECKPOINTS),
        "max_steps": cfg.steps,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "warmup_steps": cfg.warmup_steps,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "seed": seed,
        "data_seed": seed,
        "bf16": cfg.bf16,
        "use_cpu": not torch.cuda.is_available(),
        "report_to": report_to,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
        # recomputes activations in the backward: less memory for long completions, ~30% more time
        "gradient_checkpointing": cfg.gradient_checkpointing,
    }


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest trainer checkpoint in `folder` that was written to the end, or None.

    The Trainer writes checkpoint-N/ in place and its trainer_state.json last, so a process killed
    while saving leaves a checkpoint without a readable state; resuming from it would fail on every
    attempt. Such torn checkpoints are removed (they also count against save_total_limit)."""
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-")
                    and p.name.rsplit("-", 1)[1].isdigit()), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for ckpt in reversed(found):
        try:
            json.loads((ckpt / TRAINER_STATE_NAME).read_text())
            return str(ckpt)
        except (OSError, ValueError):
            log.warning("%s was not written to the end (killed while saving?); removing it", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def _train(trainer: Any, work: Path) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint if any), save adapter and log history."""
    last = last_complete_checkpoint(work / CHECKPOINTS)
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    history = trainer.state.log_history
    if trainer.args.should_save:  # rank 0 under `accelerate launch`: one writer per file
        trainer.model.save_pretrained(work / ADAPTER)
        trainer.processing_class.save_pretrained(work / ADAPTER)
        (work / LOG_HISTORY).write_text(json.dumps(history, indent=1))
    return {"train_loss": result.training_loss, "steps": trainer.state.global_step,
            "resumed_from": Path(last).name if last else None,
            "device": str(trainer.args.device)}  # where it trained (bench/gpu_smoke.py checks it)


def train_sft(*, base: str, adapter: Path | None, lora: LoraSettings, dtype: str, dataset: datasets.Dataset,
              cfg: SFTStageConfig, work: Path, seed: int, report_to: str | list[str] | None = None,
              eos_token: str | None = None) -> dict[str, Any]:
    """SFT of the LoRA adapter on {prompt, completion} conversations; loss on the completion only.
    `eos_token`: the recipe's model.eos_token (None: the chat template's end of turn)."""
    if distributed.should_launch(cfg.num_processes):
        metrics = distributed.launch("sft", num_processes=cfg.num_processes, base=base, adapter=adapter, lora=lora,
                                     dtype=dtype, dataset=dataset, cfg=cfg, work=work, seed=seed, eos_token=eos_token)
        tracking.log_history(work / LOG_HISTORY)
        return metrics
    if devices.should_isolate():  # a GPU host: one GPU, in a process of its own (core/devices.py)
        metrics = devices.run_isolated(train_sft, base=base, adapter=adapter, lora=lora, dtype=dtype, dataset=dataset,
                                       cfg=cfg, work=work, seed=seed, report_to="none", eos_token=eos_token)
        tracking.log_history(work / LOG_HISTORY)  # the stage's W&B run is open here, not in the child
        return metrics
    tokenizer = load_tokenizer(base, eos_token)
    model = trainable_model(base, adapter, lora, dtype, seed)
    # TRL appends eos_token to each completion: the end-of-turn token the samplers stop at
    args = SFTConfig(**_common_args(cfg, work, seed, report_to), max_length=cfg.max_length,
                     completion_only_loss=True, lr_scheduler_type="cosine", eos_token=tokenizer.eos_token)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _train(trainer, work)


# --- GRPO ------------------------------------------------------------------------------------


def grpo_args(cfg: GRPOStageConfig, work: Path, seed: int, weights: list[float],
              report_to: str | list[str] | None = None, stop_ids: list[int] | None = None) -> GRPOConfig:
    """GRPOConfig with every knob set from the recipe (TRL's defaults are not what we mean).
    `stop_ids`: the token ids that end a completion; HF generate takes them from the tokenizer and
    the model's generation config, vLLM (which loads its own tokenizer) from generation_kwargs."""
    vllm_stops = {"stop_token_ids": stop_ids} if cfg.use_vllm and stop_ids else None
    return GRPOConfig(
        **_common_args(cfg, work, seed, report_to),
        num_generations=cfg.num_generations,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        scale_rewards=cfg.scale_rewards,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        reward_weights=weights,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_max_model_length=cfg.vllm_max_model_length,
        generation_kwargs=vllm_stops,
        **vllm_server.trl_args(cfg),  # where server mode generates (host/port or base_url, timeout, group port)
        # constant after warmup_steps (plain "constant" would ignore them)
        lr_scheduler_type="constant_with_warmup",
        shuffle_dataset=True,
    )


class MergedRolloutGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose HF-generate rollouts run with the LoRA adapter merged into the base weights,
    unmerged again before the update (TRL merges the same way before it syncs weights to vLLM). The
    adapter's extra matmuls were a third of a pocket rollout: 64 completions x 160 tokens took 2.44-2.46 s
    through PEFT, 1.61-1.73 s from the merged plain model (2 cores); six GRPO steps 12-15% faster
    (docs/design.md, "Time"). Sharded models (DeepSpeed, FSDP) generate as TRL does.
    Overrides TRL's `_generate_single_turn` (trl is pinned; tests/test_trainers.py runs it)."""

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        model = self.accelerator.unwrap_model(self.model)
        if self.use_vllm or self.is_deepspeed_enabled or self.is_fsdp_enabled or not isinstance(model, PeftModel):
            return super()._generate_single_turn(*args, **kwargs)
        model.merge_adapter()
        try:
            return super()._generate_single_turn(*args, **kwargs)
        finally:
            model.unmerge_adapter()


def vllm_or_fallback(cfg: GRPOStageConfig) -> GRPOStageConfig:
    """The stage config as it can run here: with use_vllm off (HF generate) when vLLM cannot run."""
    if not cfg.use_vllm or vllm_usable("use_vllm", "GRPO rollouts fall back to HF generate (same results, slower)"):
        return cfg
    return cfg.model_copy(update={"use_vllm": False})


def train_grpo(*, base: str, adapter: Path | None, lora: LoraSettings, dtype: str, dataset: datasets.Dataset,
               cfg: GRPOStageConfig, work: Path, seed: int, reward_funcs: Sequence[Callable[..., Any]],
               reward_weights: Sequence[float], callbacks: Sequence[TrainerCallback] = (),
               report_to: str | list[str] | None = None, eos_token: str | None = None) -> dict[str, Any]:
    """GRPO on the LoRA adapter with the given reward functions and weights (TRL's signature: a
    weight of 0 logs a function without training on it). Under several processes, or in a process
    of its own on a GPU host, the functions and callbacks are pickled to the training processes and
    the callbacks' state comes back."""
    if distributed.should_launch(cfg.num_processes):
        metrics = distributed.launch("grpo", num_processes=cfg.num_processes, base=base, adapter=adapter, lora=lora,
                                     dtype=dtype, dataset=dataset, cfg=cfg, work=work, seed=seed,
                                     reward_funcs=list(reward_funcs), reward_weights=list(reward_weights),
                                     callbacks=callbacks, eos_token=eos_token)
        tracking.log_history(work / LOG_HISTORY)
        return metrics
    if devices.should_isolate():  # one GPU, and TRL's vLLM engine and RANK variables end with the child
        metrics, theirs = devices.run_isolated(
            _grpo_with_callbacks, base=base, adapter=adapter, lora=lora, dtype=dtype, dataset=dataset, cfg=cfg,
            work=work, seed=seed, reward_funcs=list(reward_funcs), reward_weights=list(reward_weights),
            callbacks=list(callbacks), report_to="none", eos_token=eos_token)
        for mine, state in zip(callbacks, theirs, strict=True):
            mine.__dict__.update(state.__dict__)
        tracking.log_history(work / LOG_HISTORY)
        return metrics
    cfg = vllm_or_fallback(cfg)  # in the process that trains: the GPU workers' environment has vLLM
    funcs, weights = list(reward_funcs), list(reward_weights)
    tokenizer = load_tokenizer(base, eos_token)
    model = trainable_model(base, adapter, lora, dtype, seed)
    # HF generate in TRL stops at the tokenizer's EOS and at these
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    args = grpo_args(cfg, work, seed, weights, report_to, stop_token_ids(tokenizer, model))
    trainer = MergedRolloutGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                                       processing_class=tokenizer, callbacks=list(callbacks))
    metrics = _train(trainer, work)
    metrics.update(reward_trend(trainer.state.log_history))
    metrics["rollouts"] = "vllm" if args.use_vllm else "hf"
    return metrics


def _grpo_with_callbacks(**kwargs: Any) -> tuple[dict[str, Any], list[TrainerCallback]]:
    # in the child: the callbacks' state (held-out curve, guard) travels back with the metrics
    return train_grpo(**kwargs), kwargs["callbacks"]


def reward_trend(history: list[dict[str, Any]], key: str = "reward") -> dict[str, float]:
    """Mean of `key` over the first and the last 10% of logged steps."""
    values = [h[key] for h in history if key in h and not math.isnan(h[key])]
    if not values:
        return {}
    n = max(1, len(values) // 10)
    return {f"{key}_first10": sum(values[:n]) / n, f"{key}_last10": sum(values[-n:]) / n}
