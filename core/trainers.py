"""Recipe configs mapped to TRL's trainers: SFT and GRPO on a LoRA adapter (TRL + PEFT), and the
reward model (RewardTrainer).

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
from peft import LoraConfig, PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from core import decoding, devices, distributed, tracking, vllm_server
from core.config import GRPOStageConfig, LoraSettings, RewardModelConfig, SFTStageConfig, TrainConfig
from core.generation import vllm_usable
from core.layout import ADAPTER, CHECKPOINTS, LOG_HISTORY, MODEL
from core.modeling import load_tokenizer, stop_token_ids, trainable_model

log = logging.getLogger(__name__)


def trl_config(cls: type, cfg: TrainConfig, work: Path, seed: int, report_to: str | list[str] | None,
               defaults: dict[str, Any] | None = None, **fixed: Any) -> Any:
    """The TRL config `cls` of a stage: `defaults` we chose (a recipe's `trl` may change them), then
    the section's settings under TRL's names and its `trl` mapping (cfg.trl_args()), then what the
    project manages (where it writes and reports, the device, the seed, checkpoints) and `fixed`."""
    if report_to is None:  # the stage's W&B run, when the runner opened one (TRL logs into it)
        report_to = tracking.report_to()
    managed = {"output_dir": str(work / CHECKPOINTS), "save_strategy": "steps", "seed": seed, "data_seed": seed,
               "use_cpu": not torch.cuda.is_available(), "report_to": report_to}
    return cls(**{"dataloader_num_workers": 0, "disable_tqdm": False, **(defaults or {}), **cfg.trl_args(),
                  **managed, **fixed})


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


def _train(trainer: Any, work: Path, save: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint if any), then save the model (`save`;
    default: the adapter and tokenizer into work/adapter) and the log history."""
    last = last_complete_checkpoint(work / CHECKPOINTS)
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    history = trainer.state.log_history
    if trainer.args.should_save:  # rank 0 under `accelerate launch`: one writer per file
        if save is None:
            trainer.model.save_pretrained(work / ADAPTER)
            trainer.processing_class.save_pretrained(work / ADAPTER)
        else:
            save(trainer)
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
    args = trl_config(SFTConfig, cfg, work, seed, report_to, {"lr_scheduler_type": "cosine"},
                      completion_only_loss=True, eos_token=tokenizer.eos_token)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _train(trainer, work)


# --- GRPO ------------------------------------------------------------------------------------


def grpo_args(cfg: GRPOStageConfig, work: Path, seed: int, weights: list[float],
              report_to: str | list[str] | None = None, stop_ids: list[int] | None = None) -> GRPOConfig:
    """GRPOConfig from the recipe (TRL's defaults are not what we mean: the section sets the knobs).
    `stop_ids`: the token ids that end a completion; HF generate takes them from the tokenizer and
    the model's generation config, vLLM (which loads its own tokenizer) from generation_kwargs."""
    vllm_stops = {"stop_token_ids": stop_ids} if cfg.use_vllm and stop_ids else None
    # constant after warmup_steps (plain "constant" would ignore them)
    defaults = {"lr_scheduler_type": "constant_with_warmup", "shuffle_dataset": True, "generation_kwargs": vllm_stops}
    # where server mode generates (host/port or base_url, timeout, group port): the section's vllm_server
    return trl_config(GRPOConfig, cfg, work, seed, report_to, defaults, reward_weights=weights,
                      **vllm_server.trl_args(cfg))


class MergedRolloutGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose HF-generate rollouts run with the LoRA adapter merged into the base weights,
    unmerged again before the update (TRL merges the same way before it syncs weights to vLLM). The
    adapter's extra matmuls were a third of a pocket rollout: 64 completions x 160 tokens took 2.44-2.46 s
    through PEFT, 1.61-1.73 s from the merged plain model (2 cores); six GRPO steps 12-15% faster
    (docs/design.md, "Time"). On a model the lean sampler supports (core/decoding.py: the pocket
    model on a CPU, sampling with temperature and top-p alone) the merged model samples through it
    instead of HF generate, the same distribution in fewer operations. Sharded models (DeepSpeed,
    FSDP) generate as TRL does. Overrides TRL's `_generate_single_turn` (trl is pinned;
    tests/test_trainers.py runs it)."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                              has_tool_images=False):
        model = self.accelerator.unwrap_model(self.model)
        if self.use_vllm or self.is_deepspeed_enabled or self.is_fsdp_enabled or not isinstance(model, PeftModel):
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        model.merge_adapter()
        try:
            plain = model.get_base_model()
            if self._lean_sampling(plain, images, multimodal_fields):
                return self._lean_rollouts(plain, prompt_ids), None
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        finally:
            model.unmerge_adapter()

    def _lean_sampling(self, plain: Any, images: Any, multimodal_fields: Any) -> bool:
        """Whether these rollouts sample what HF generate would through the lean sampler."""
        g = self.generation_config
        return (decoding.supported(plain) and not images and not multimodal_fields and not self.tools
                and g.do_sample and (g.top_k in (None, 0)) and g.min_p is None
                and (g.repetition_penalty in (None, 1.0)))

    def _lean_rollouts(self, plain: Any, prompt_ids: list[list[int]]) -> list[list[int]]:
        """The rollouts of the left-padded prompts through core/decoding.py, each up to and including
        its first end-of-sequence token, as TRL's HF path returns them."""
        pad = self._tokenizer.pad_token_id
        width = max(map(len, prompt_ids))
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompt_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        g = self.generation_config
        new = decoding.sample(plain, ids, mask, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                              top_p=g.top_p if g.top_p is not None else 1.0, stop_ids=self.eos_token_ids, pad_id=pad)
        stops = set(self.eos_token_ids)
        out = []
        for row in new.tolist():
            end = next((i for i, t in enumerate(row) if t in stops), len(row) - 1)
            out.append(row[: end + 1])
        return out


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


# --- the reward model ----------------------------------------------------------------------------


def reward_lora(cfg: RewardModelConfig, lora: LoraSettings, parameters: int) -> LoraConfig | None:
    """A LoRA adapter (task SEQ_CLS) for a large base, None for a full fine-tune of a small one."""
    if cfg.use_lora == "never" or (cfg.use_lora == "auto" and parameters <= cfg.lora_above_parameters):
        return None
    return LoraConfig(task_type="SEQ_CLS", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules)


def train_reward(*, base: str, lora: LoraSettings, dataset: datasets.Dataset, cfg: RewardModelConfig, work: Path,
                 report_to: str | list[str] | None = None) -> dict[str, Any]:
    """A reward model: a sequence classifier (one score) initialised from the base, trained on
    {prompt, chosen, rejected} pairs with TRL's RewardTrainer, checkpointed and resumed like the other
    trainers. A large base trains a LoRA adapter that is merged before saving, so work/model is one
    plain model directory either way."""
    if devices.should_isolate():  # one GPU (no DataParallel), its memory back when done
        metrics = devices.run_isolated(train_reward, base=base, lora=lora, dataset=dataset, cfg=cfg, work=work,
                                       report_to="none")
        tracking.log_history(work / LOG_HISTORY)
        return metrics
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(cfg.seed)  # the new score head is drawn at load time
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    peft_config = reward_lora(cfg, lora, model.num_parameters())
    max_length = min(cfg.max_length, getattr(model.config, "max_position_embeddings", cfg.max_length))
    # centring keeps scores near 0, so the reward mixes with rule rewards
    defaults = {"lr_scheduler_type": "cosine", "center_rewards_coefficient": 0.01, "disable_tqdm": True}
    args = trl_config(RewardConfig, cfg, work, cfg.seed, report_to, defaults, max_length=max_length)
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    if len(trainer.train_dataset) < len(dataset):
        log.warning("reward model: %d of %d pairs are longer than max_length %d and were dropped",
                    len(dataset) - len(trainer.train_dataset), len(dataset), max_length)

    def save(trained: Any) -> None:
        final = trained.model.merge_and_unload() if peft_config is not None else trained.model
        final.save_pretrained(work / MODEL)
        tokenizer.save_pretrained(work / MODEL)

    metrics = _train(trainer, work, save)
    return metrics | {"train_pairs": len(trainer.train_dataset), "lora": peft_config is not None,
                      "parameters": model.num_parameters()}
