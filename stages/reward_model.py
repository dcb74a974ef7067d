"""Stage: the reward model (for prompts with no verifier, used in the all-scenario RL stage).

Reads like a recipe: preference pairs from the recipe's preference dataset (`reward_model.dataset`,
real recipes) or generated from the pocket world's general tasks (pocket/preferences.py), trained
by core/trainers.py (`train_reward`: a sequence classifier initialised from the base, TRL's
RewardTrainer, checkpointed like every trainer), then the held-out pair accuracy (how often the
preferred answer scores higher) as the stage's metric.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import datasets

import pocket
from core.config import RewardModelConfig
from core.layout import HELDOUT_PAIRS, METRICS, MODEL
from core.resources import model_copy_bytes
from core.runstore import Ref, StageOutcome, StageResult
from core.stage import StageCall
from core.trainers import train_reward
from data.preferences import dataset_pairs
from rewards.completions import prompt_key
from rewards.reward_model import score_texts

log = logging.getLogger(__name__)


def model_path(ref: Ref) -> Path:
    """The trained classifier's directory in a reward_model stage (what `reward_model_path` takes)."""
    return model_path_in(Path(ref.path))


def model_path_in(stage_dir: Path) -> Path:
    return stage_dir / MODEL


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


def run(call: StageCall) -> StageOutcome:
    """Train (or reuse) the reward model on top of the base; its classifier lives at model_path(ref)."""
    base_ref = call.inputs["base"]

    def build(work: Path) -> StageResult:
        t0 = time.perf_counter()
        train_pairs, heldout = pairs(call.cfg)
        columns = ("prompt", "chosen", "rejected")
        dataset = datasets.Dataset.from_list([{k: p[k] for k in columns} for p in train_pairs])
        metrics = train_reward(base=base_ref.path, lora=call.recipe.model.lora, dataset=dataset, cfg=call.cfg,
                               work=work)
        with open(work / HELDOUT_PAIRS, "w", encoding="utf-8") as fh:
            for pair in heldout:
                fh.write(json.dumps(pair) + "\n")
        metrics |= pair_accuracy(model_path_in(work), heldout) | {"heldout_pairs": len(heldout),
                                                                   "train_s": round(time.perf_counter() - t0, 1)}
        log.info("reward model: held-out pair accuracy %.3f", metrics["heldout_accuracy"])
        (work / METRICS).write_text(json.dumps(metrics, indent=2))
        return StageResult(metrics=metrics)

    # a full fine-tune writes a classifier the size of the base (a LoRA one: less)
    return call.run(build, needs_bytes=model_copy_bytes(base_ref.path))
