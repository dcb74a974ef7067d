"""The GRPO stages, one recipe for all of them:

  * reasoning RL (stage 2): continues the cold-start adapter on verifiable prompts, rewards accuracy +
    format + language consistency;
  * R1-Zero: a fresh adapter straight on the base, accuracy + format only;
  * all-scenario RL (stage 4): continues the SFT adapter on verifiable *and* general prompts, rule
    rewards where a verifier exists and the trained reward model elsewhere, under a reward-hacking
    guard that keeps the best adapter and stops when validation accuracy falls by more than a margin
    (the paper stopped its reward-model phase early for this reason);
  * the distilled student's RL-only comparison: a fresh adapter on the student.

What differs is data, not code: the stage's recipe section (its rewards, their weights and rows),
whether it has an `adapter` input to continue and a `reward_model` input to score with, and whether
its section mixes in general prompts (`general_fraction`) and has a guard (`guard`). Read top to bottom: prompts, validation
callbacks, rewards, train, keep the best adapter.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
from transformers import TrainerCallback

from core.config import GRPOStageConfig, GuardConfig, TemplateConfig
from core.generation import generate
from core.layout import ADAPTER, BEST_ADAPTER, ROLLOUTS, VALIDATION_CURVE
from core.modeling import adapter_path, load_tokenizer
from core.resources import trainer_stage_bytes
from core.runstore import Ref, StageOutcome, StageResult
from core.stage import StageCall
from core.trainers import train_grpo
from data.chat import messages, prompt_dataset, render
from data.saved import load_split
from rewards.completions import think_prefilled
from rewards.monitors import RolloutLog
from rewards.routing import grpo_rewards
from rewards.verdict import judge_completion
from stages.general import general_rows
from stages.reward_model import model_path

log = logging.getLogger(__name__)


# --- prompts -----------------------------------------------------------------------------------


def training_prompts(cfg: GRPOStageConfig, recipe: Any, task_data_ref: Ref,
                     fits: Callable[[str], bool] = lambda prompt: True) -> datasets.Dataset:
    """The stage's training prompts: verifiable task prompts; with a `general_fraction` (stage 4) its
    share of general prompts, every row tagged by `kind` (which rewards judge it: rewards/routing.py)."""
    template, seed = recipe.data.template, recipe.seed
    verifiable = prompt_dataset(load_split(task_data_ref, "train"), template, cfg.prompts, seed)
    if not cfg.general_fraction:
        return verifiable
    verifiable = verifiable.add_column("kind", ["verifiable"] * len(verifiable))
    n_general = round(len(verifiable) * cfg.general_fraction / (1 - cfg.general_fraction))
    rows = [{k: r[k] for k in ("prompt", "answer", "task", "metadata")}
            for r in general_rows(recipe, n_general, seed + 1, fits)]
    general = prompt_dataset(datasets.Dataset.from_list(rows), template)
    general = general.add_column("kind", ["general"] * len(general))
    return datasets.concatenate_datasets([verifiable, general.cast(verifiable.features)]).shuffle(seed=seed)


def prompt_fits(base: str, template: TemplateConfig, cfg: GRPOStageConfig, eos_token: str | None) -> Callable[[str], bool]:
    """Whether a general prompt leaves room for a whole completion in vLLM's context
    (`vllm_max_model_length`; vLLM refuses longer prompts). Task prompts are checked by preflight."""
    if not (cfg.use_vllm and cfg.vllm_max_model_length):
        return lambda prompt: True
    tokenizer = load_tokenizer(base, eos_token)
    room = cfg.vllm_max_model_length - cfg.max_completion_length
    return lambda prompt: len(tokenizer(render(tokenizer, messages(prompt, template)),
                                        add_special_tokens=False)["input_ids"]) <= room


# --- validation accuracy while training ----------------------------------------------------------


class ValidationProbe(TrainerCallback):
    """Greedy validation accuracy every `every` steps (and at the first and last step) with the model
    being trained, with mean response length and reflection words; the curve goes to
    <work>/validation_curve.json (the R1-Zero "aha" plots read it) and to W&B when a run is open."""

    def __init__(self, base: str, rows: list[dict[str, Any]], template: TemplateConfig, every: int,
                 max_new_tokens: int, work: Path, eos_token: str | None = None):
        self.tokenizer = load_tokenizer(base, eos_token)  # its own: generation pads on the left
        self.rows, self.every, self.work, self.max_new_tokens = rows, every, work, max_new_tokens
        self.prompts = [render(self.tokenizer, messages(r["prompt"], template)) for r in rows]
        self.prefilled = [think_prefilled(p) for p in self.prompts]
        self.history: list[dict[str, float]] = []
        self.writes = True  # only rank 0 writes files when the stage runs in several processes

    def measure(self, model: Any, step: int) -> dict[str, float]:
        was_training = model.training
        outs = generate(model, self.tokenizer, self.prompts, max_new_tokens=self.max_new_tokens, progress=False)
        model.train(was_training)
        verdicts = [judge_completion(c, r, "en", p) for (c,), r, p in zip(outs, self.rows, self.prefilled, strict=True)]
        point = {"step": step, "validation_accuracy": sum(bool(v.correct) for v in verdicts) / len(verdicts),
                 "validation_mean_length": sum(v.num_tokens for v in verdicts) / len(verdicts),
                 "validation_reflection_words": sum(v.reflection_words for v in verdicts) / len(verdicts)}
        self.history.append(point)
        self._log(point)
        return point

    def _log(self, point: dict[str, float]) -> None:
        log.info("validation at step %d: accuracy %.3f, mean length %.1f", point["step"], point["validation_accuracy"],
                 point["validation_mean_length"])
        try:
            import wandb  # present with the pinned deps; seconds to import, so only when a probe logs

            if wandb.run is not None:
                wandb.run.log({f"validation/{k}": v for k, v in point.items() if k != "step"}, commit=False)
        except ImportError:
            pass
        if not self.writes:
            return
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / VALIDATION_CURVE).write_text(json.dumps(self.history, indent=1))

    def check(self, step: int, model: Any, control: Any) -> None:
        """Hook for subclasses: called after each measurement."""
        self.measure(model, step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.writes = state.is_world_process_zero
        self.check(state.global_step, model, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.check(state.global_step, model, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self.check(state.global_step, model, control)


class RewardHackingGuard(ValidationProbe):
    """Saves the adapter whenever validation accuracy reaches a new best; stops training when it falls
    more than `margin` below the best."""

    def __init__(self, base: str, rows: list[dict[str, Any]], template: TemplateConfig, cfg: GuardConfig,
                 max_new_tokens: int, work: Path, eos_token: str | None = None):
        super().__init__(base, rows, template, cfg.every, max_new_tokens, work, eos_token)
        self.margin = cfg.margin
        self.best, self.best_step, self.stopped_at = -1.0, 0, None

    def check(self, step: int, model: Any, control: Any) -> None:
        acc = self.measure(model, step)["validation_accuracy"]
        if acc > self.best:
            self.best, self.best_step = acc, step
            if self.writes:
                model.save_pretrained(self.work / BEST_ADAPTER)
        elif acc < self.best - self.margin:
            log.warning("guard: accuracy fell %.3f -> %.3f (margin %.3f); stopping at step %d and keeping "
                        "the adapter of step %d", self.best, acc, self.margin, step, self.best_step)
            self.stopped_at = step
            control.should_training_stop = True

    def summary(self) -> dict[str, Any]:
        final = self.history[-1]["validation_accuracy"] if self.history else None
        return {"guard_split": "validation", "guard_history": self.history, "guard_best_accuracy": self.best,
                "guard_best_step": self.best_step,
                "guard_stopped_at": self.stopped_at, "guard_final_accuracy": final,
                "guard_restored_best": final is not None and final < self.best}


def validation_callbacks(cfg: GRPOStageConfig, task_data_ref: Ref, base: str, template: TemplateConfig,
                      work: Path, eos_token: str | None = None) -> list[ValidationProbe]:
    """The guard where the stage has one (stage 4); a probe where it asks for a validation curve."""
    # the validation split: whatever stops training or keeps an adapter never reads the test split
    validation = list(load_split(task_data_ref, "validation"))
    if cfg.guard is not None:
        return [RewardHackingGuard(base, validation[: cfg.guard.prompts], template, cfg.guard,
                                   cfg.max_completion_length, work, eos_token)]
    if cfg.validation_every:
        return [ValidationProbe(base, validation[: cfg.validation_prompts], template, cfg.validation_every,
                             cfg.max_completion_length, work, eos_token)]
    return []


# --- the stage ---------------------------------------------------------------------------------


def run(call: StageCall) -> StageOutcome:
    cfg, recipe = call.cfg, call.recipe
    task_data_ref, base_ref = call.inputs["task_data"], call.inputs["base"]
    adapter_ref, judge_ref = call.inputs.get("adapter"), call.inputs.get("reward_model")
    template, model = recipe.data.template, recipe.model

    def build(work: Path) -> StageResult:
        fits = prompt_fits(base_ref.path, template, cfg, model.eos_token)
        data = training_prompts(cfg, recipe, task_data_ref, fits)
        callbacks = validation_callbacks(cfg, task_data_ref, base_ref.path, template, work, model.eos_token)
        context = {"reward_model_path": str(model_path(judge_ref))} if judge_ref else {}
        funcs, weights = grpo_rewards(cfg.rewards, **context)
        if cfg.log_rollouts:  # after a resume it holds the rollouts since the last checkpoint
            funcs, weights = [*funcs, RolloutLog(work / ROLLOUTS)], [*weights, 0.0]
        metrics = train_grpo(
            base=base_ref.path, adapter=adapter_path(adapter_ref) if adapter_ref else None, lora=model.lora,
            dtype=model.dtype, dataset=data, cfg=cfg, work=work, seed=recipe.seed, reward_funcs=funcs,
            reward_weights=weights, callbacks=callbacks, eos_token=model.eos_token,
        )
        metrics["prompts"] = len(data)
        for callback in callbacks:
            if isinstance(callback, RewardHackingGuard):
                metrics |= keep_best_adapter(callback, work, base_ref.path, model.eos_token)
                metrics["general_prompts"] = sum(k == "general" for k in data["kind"])
            else:
                metrics["validation_curve"] = callback.history
        return StageResult(metrics=metrics)

    # a guard keeps a copy of the best adapter besides the trainer's checkpoints
    kept = cfg.save_total_limit + (1 if cfg.guard is not None else 0)
    return call.run(build, needs_bytes=trainer_stage_bytes(base_ref.path, model.lora.r, kept))


def keep_best_adapter(guard: RewardHackingGuard, work: Path, base: str, eos_token: str | None = None) -> dict[str, Any]:
    """Restore the guard's best adapter when training ended below it; the guard's figures."""
    summary = guard.summary()
    if summary["guard_restored_best"]:
        shutil.rmtree(work / ADAPTER)
        shutil.copytree(work / BEST_ADAPTER, work / ADAPTER)
        load_tokenizer(base, eos_token).save_pretrained(work / ADAPTER)
    shutil.rmtree(work / BEST_ADAPTER, ignore_errors=True)
    return summary
