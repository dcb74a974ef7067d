"""The two training components every stage composes: SFT and GRPO on a LoRA adapter (TRL + PEFT).

Both read a stage config, resume from the last trainer checkpoint in <work>/checkpoints when a
killed attempt left one, save the adapter to <work>/adapter and the trainer's log history to
<work>/log_history.json (what the run report plots), and return summary metrics.
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
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from core import distributed, tracking
from core.config import GRPOStageConfig, LoraConfig, Recipe, SFTStageConfig, TrainConfig
from core.generation import vllm_usable
from core.modeling import ADAPTER, adapter_path, load_tokenizer, trainable_model
from core.resources import trainer_stage_bytes
from core.runstore import CHECKPOINTS, Ref, RunStore, StageResult
from data.chat import prompt_dataset
from data.saved import load_split

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
        "gradient_checkpointing": False,  # the pocket model is tiny: recomputation only costs time
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
            "resumed_from": Path(last).name if last else None}


def train_sft(*, base: str, adapter: Path | None, lora: LoraConfig, dtype: str, dataset: datasets.Dataset,
              cfg: SFTStageConfig, work: Path, seed: int, report_to: str | list[str] | None = None) -> dict[str, Any]:
    """SFT of the LoRA adapter on {prompt, completion} conversations; loss on the completion only."""
    if distributed.should_launch(cfg.num_processes):
        return distributed.launch("sft", num_processes=cfg.num_processes, base=base, adapter=adapter, lora=lora,
                                  dtype=dtype, dataset=dataset, cfg=cfg, work=work, seed=seed)
    tokenizer = load_tokenizer(base)
    model = trainable_model(base, adapter, lora, dtype)
    args = SFTConfig(**_common_args(cfg, work, seed, report_to), max_length=cfg.max_length,
                     completion_only_loss=True, lr_scheduler_type="cosine")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _train(trainer, work)


# --- GRPO ------------------------------------------------------------------------------------


def _monitor(name: str, score: Callable[[str], float]) -> Callable[..., list[float]]:
    """A zero-weight 'reward' so TRL logs a per-step statistic of the completions."""

    def monitor(completions: list[Any], **_: Any) -> list[float]:
        from rewards.completions import text_of

        return [score(text_of(c)) for c in completions]

    monitor.__name__ = name
    return monitor


def _reflection_rate(text: str) -> float:
    from rewards.extract import think_text
    from rewards.reflection import reflection_count

    words = max(1, len(think_text(text).split()) or len(text.split()))
    return reflection_count(text) / words


def monitors() -> list[Callable[..., list[float]]]:
    """Statistics logged at every GRPO step besides the rewards themselves."""
    from rewards.extract import think_text
    from rewards.reflection import reflection_count

    out = [_monitor("reflection_words", lambda t: float(reflection_count(t))),
           _monitor("reflection_rate", _reflection_rate),
           _monitor("reflected", lambda t: float(reflection_count(t) > 0)),
           _monitor("wrote_steps", lambda t: float(any(c.isdigit() for c in think_text(t))))]
    return out


def grpo_args(cfg: GRPOStageConfig, work: Path, seed: int, weights: list[float],
              report_to: str | list[str] | None = None) -> GRPOConfig:
    """GRPOConfig with every knob set from the recipe (TRL's defaults are not what we mean)."""
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
        lr_scheduler_type="constant",
        shuffle_dataset=True,
    )


def restrict(func: Callable[..., list[float | None]], rows: str) -> Callable[..., list[float | None]]:
    """Apply a reward only to rows whose `kind` column is `rows` ('verifiable' or 'general'); the
    others score None ("cannot judge"), which TRL leaves out of the weighted sum."""
    if rows == "all":
        return func

    def restricted(completions: list[Any], kind: list[str] | None = None, **kwargs: Any) -> list[float | None]:
        n = len(completions)
        kinds = kind or ["verifiable"] * n
        keep = [i for i, k in enumerate(kinds) if k == rows]
        out: list[float | None] = [None] * n
        if keep:
            sub = {k: [v[i] for i in keep] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
            scores = func([completions[i] for i in keep], kind=[kinds[i] for i in keep], **sub)
            for i, score in zip(keep, scores, strict=True):
                out[i] = score
        return out

    restricted.__name__ = getattr(func, "__name__", "reward")
    return restricted


def vllm_or_fallback(cfg: GRPOStageConfig) -> GRPOStageConfig:
    """The stage config as it can run here: with use_vllm off (HF generate) when vLLM cannot run."""
    if not cfg.use_vllm or vllm_usable("use_vllm", "GRPO rollouts fall back to HF generate (same results, slower)"):
        return cfg
    return cfg.model_copy(update={"use_vllm": False})


def train_grpo(*, base: str, adapter: Path | None, lora: LoraConfig, dtype: str, dataset: datasets.Dataset,
               cfg: GRPOStageConfig, work: Path, seed: int, reward_context: dict[str, Any] | None = None,
               reward_funcs: tuple[list[Callable], list[float]] | None = None,
               callbacks: Sequence[TrainerCallback] = (), report_to: str | list[str] | None = None) -> dict[str, Any]:
    """GRPO on the LoRA adapter with the recipe's rewards (or the given ones) plus logged monitors."""
    cfg = vllm_or_fallback(cfg)
    if distributed.should_launch(cfg.num_processes):
        return distributed.launch("grpo", num_processes=cfg.num_processes, base=base, adapter=adapter, lora=lora,
                                  dtype=dtype, dataset=dataset, cfg=cfg, work=work, seed=seed,
                                  reward_context=reward_context, reward_funcs=reward_funcs, callbacks=callbacks)
    from rewards import registry

    if reward_funcs is None:
        funcs, weights = registry.build(cfg.rewards, **(reward_context or {}))
        funcs = [restrict(f, spec.rows) for f, spec in zip(funcs, cfg.rewards, strict=True)]
    else:
        funcs, weights = reward_funcs
    extra = monitors()
    funcs, weights = list(funcs) + extra, list(weights) + [0.0] * len(extra)
    tokenizer = load_tokenizer(base)
    model = trainable_model(base, adapter, lora, dtype)
    args = grpo_args(cfg, work, seed, weights, report_to)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=list(callbacks))
    metrics = _train(trainer, work)
    metrics.update(reward_trend(trainer.state.log_history))
    return metrics


def reward_trend(history: list[dict[str, Any]], key: str = "reward") -> dict[str, float]:
    """Mean of `key` over the first and the last 10% of logged steps."""
    values = [h[key] for h in history if key in h and not math.isnan(h[key])]
    if not values:
        return {}
    n = max(1, len(values) // 10)
    return {f"{key}_first10": sum(values[:n]) / n, f"{key}_last10": sum(values[-n:]) / n}


def grpo_stage(recipe: Recipe, store: RunStore, run_id: str, stage: str, cfg: GRPOStageConfig, tasks_ref: Ref,
               base_ref: Ref, adapter_ref: Ref | None, force: bool = False) -> Ref:
    """A GRPO stage in the run store on the training prompts, continuing `adapter_ref` (or a fresh
    adapter when None); with `cfg.heldout_every` it also records the held-out accuracy curve."""
    from core.heldout_probe import HeldoutProbe

    def build(work: Path) -> StageResult:
        data = prompt_dataset(load_split(tasks_ref, "train"), recipe.data.template, cfg.prompts, recipe.seed)
        probes = [HeldoutProbe(base_ref.path, list(load_split(tasks_ref, "heldout"))[: cfg.heldout_prompts],
                               recipe.data.template, cfg.heldout_every, cfg.max_completion_length, work)] \
            if cfg.heldout_every else []
        metrics = train_grpo(
            base=base_ref.path, adapter=adapter_path(adapter_ref) if adapter_ref else None,
            lora=recipe.model.lora, dtype=recipe.model.dtype, dataset=data, cfg=cfg, work=work,
            seed=recipe.seed, callbacks=probes,
        )
        if probes:
            metrics["heldout_curve"] = probes[0].history
        return StageResult(metrics={**metrics, "prompts": len(data)})

    inputs = {"tasks": tasks_ref, "base": base_ref} | ({"adapter": adapter_ref} if adapter_ref else {})
    config = {"stage": cfg.model_dump(mode="json"), "lora": recipe.model.lora.model_dump(mode="json"),
              "template": recipe.data.template.model_dump(mode="json"), "seed": recipe.seed}
    return store.run_stage(run_id, stage, config, inputs, build, force=force,
                           needs_bytes=trainer_stage_bytes(base_ref.path, recipe.model.lora.r, cfg.save_total_limit))
