"""Stage: the reward model (for prompts with no verifier, used in the all-scenario RL stage).

Reads like a recipe: preference pairs from the recipe's preference dataset (`reward_model.dataset`,
real recipes) or generated from the pocket world's general tasks (pocket/preferences.py),
a sequence classifier (num_labels=1) initialised from the base model, TRL's RewardTrainer, save,
then the held-out pair accuracy (how often the preferred answer scores higher) as the stage's
metric. Small bases are fully fine-tuned; large ones train a LoRA adapter (task SEQ_CLS) that is
merged before saving, so the reward loads one plain model directory either way.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

import pocket
from core import devices, tracking
from core.config import LoraSettings, RewardModelConfig
from core.layout import HELDOUT_PAIRS, METRICS, MODEL
from core.resources import model_copy_bytes
from core.runstore import Ref, StageOutcome, StageResult
from core.stage import StageCall
from data.preferences import dataset_pairs
from rewards.completions import prompt_key
from rewards.reward_model import score_texts

log = logging.getLogger(__name__)


def model_path(ref: Ref) -> Path:
    """The trained classifier's directory in a reward_model stage (what `reward_model_path` takes)."""
    return Path(ref.path) / MODEL


def pairs(cfg: RewardModelConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out) preference pairs; no held-out prompt appears in training."""
    if cfg.dataset is not None:
        return dataset_pairs(cfg.dataset, cfg.pairs, cfg.heldout_pairs, cfg.seed)
    train = pocket.preference_pairs(pocket.general_rows(cfg.pairs, cfg.seed), cfg.seed)
    seen = {prompt_key(p["prompt"][0]["content"]) for p in train}
    candidates = pocket.preference_pairs(pocket.general_rows(cfg.heldout_pairs * 4, cfg.seed + 1), cfg.seed + 1)
    heldout = [p for p in candidates if prompt_key(p["prompt"][0]["content"]) not in seen][: cfg.heldout_pairs]
    return train, heldout


def pair_accuracy(path: str | Path, heldout: list[dict[str, Any]]) -> dict[str, float]:
    """Share of held-out pairs whose chosen reply outscores the rejected one, overall and per spoil kind."""
    prompts = [p["prompt"] for p in heldout]
    chosen = score_texts(path, prompts, [p["chosen"][-1]["content"] for p in heldout])
    rejected = score_texts(path, prompts, [p["rejected"][-1]["content"] for p in heldout])
    wins: dict[str, list[bool]] = {}
    for pair, c, r in zip(heldout, chosen, rejected, strict=True):
        for key in ("all", pair["kind"]):  # a dataset's pairs have no spoil kind (None)
            if key:
                wins.setdefault(key, []).append(c > r)
    return {f"heldout_accuracy_{k}" if k != "all" else "heldout_accuracy": sum(v) / len(v)
            for k, v in sorted(wins.items())}


def _peft_config(cfg: RewardModelConfig, lora: LoraSettings, parameters: int) -> LoraConfig | None:
    if cfg.use_lora == "never" or (cfg.use_lora == "auto" and parameters <= cfg.lora_above_parameters):
        return None
    return LoraConfig(task_type="SEQ_CLS", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules)


def train(cfg: RewardModelConfig, lora: LoraSettings, base_path: str | Path, out: Path) -> dict[str, Any]:
    """Train the classifier on generated pairs and save model + tokenizer into out/model."""
    t0 = time.perf_counter()
    train_pairs, heldout = pairs(cfg)
    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(cfg.seed)  # the new score head is drawn at load time
    model = AutoModelForSequenceClassification.from_pretrained(str(base_path), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    peft_config = _peft_config(cfg, lora, model.num_parameters())
    max_length = min(cfg.max_length, getattr(model.config, "max_position_embeddings", cfg.max_length))
    args = RewardConfig(
        output_dir=str(out / "trainer"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=min(20, cfg.steps // 10),
        max_length=max_length,
        center_rewards_coefficient=0.01,  # keeps scores near 0 so the reward mixes with rule rewards
        logging_steps=max(1, cfg.steps // 10),
        save_strategy="no",
        report_to=tracking.report_to(),  # TRL curves go to the stage's W&B run when one is open
        use_cpu=not torch.cuda.is_available(),
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        disable_tqdm=True,
    )
    columns = ("prompt", "chosen", "rejected")
    dataset = datasets.Dataset.from_list([{k: p[k] for k in columns} for p in train_pairs])
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    if len(trainer.train_dataset) < len(dataset):
        log.warning("reward model: %d of %d pairs are longer than max_length %d and were dropped",
                    len(dataset) - len(trainer.train_dataset), len(dataset), max_length)
    result = trainer.train()
    model = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
    model.save_pretrained(out / MODEL)
    tokenizer.save_pretrained(out / MODEL)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    train_s = time.perf_counter() - t0
    with open(out / HELDOUT_PAIRS, "w", encoding="utf-8") as fh:
        for pair in heldout:
            fh.write(json.dumps(pair) + "\n")
    metrics = pair_accuracy(out / MODEL, heldout)
    metrics.update({
        "train_pairs": len(trainer.train_dataset),
        "heldout_pairs": len(heldout),
        "train_loss": result.training_loss,
        "lora": peft_config is not None,
        "parameters": model.num_parameters(),
        "train_s": round(train_s, 1),
        "device": str(args.device),
    })
    log.info("reward model: held-out pair accuracy %.3f after %.1fs", metrics["heldout_accuracy"], train_s)
    return metrics


def run(call: StageCall) -> StageOutcome:
    """Train (or reuse) the reward model on top of the base; its classifier lives at model_path(ref)."""
    base_ref = call.inputs["base"]

    def build(work: Path) -> StageResult:
        if devices.should_isolate():  # one GPU (no DataParallel), its memory back when done
            metrics = devices.run_isolated(train, call.cfg, call.recipe.model.lora, base_ref.path, work)
        else:
            metrics = train(call.cfg, call.recipe.model.lora, base_ref.path, work)
        (work / METRICS).write_text(json.dumps(metrics, indent=2))
        return StageResult(metrics=metrics)

    # a full fine-tune writes a classifier the size of the base (a LoRA one: less)
    return call.run(build, needs_bytes=model_copy_bytes(base_ref.path))
