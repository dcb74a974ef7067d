"""The reward-hacking guard of all-scenario RL (stages/grpo.py), in a real GRPO run: a held-out
accuracy that rises then collapses must stop training and leave the best adapter as the stage's
output. The accuracy is scripted (the one thing not measured) so the collapse is certain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from core.config import GuardConfig
from core.layout import ADAPTER, BEST_ADAPTER
from core.modeling import adapter_path
from core.trainers import train_grpo
from data.saved import load_split
from rewards.routing import grpo_rewards
from stages import grpo

# (held-out accuracy the guard reads at step 0, 2, 4, 6); with margin 0.3, 0.2 at step 4 is a collapse
SCRIPT = [0.5, 0.75, 0.2, 0.9]
GUARD = GuardConfig(every=2, margin=0.3, prompts=4)


class ScriptedGuard(grpo.RewardHackingGuard):
    """The real guard (check, save, stop, summary) reading held-out accuracy from SCRIPT; it keeps a
    copy of the adapter weights it saw at each check."""

    def __init__(self, *args):
        super().__init__(*args)
        self.script, self.seen = iter(SCRIPT), {}

    def measure(self, model, step):
        self.seen[step] = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
        point = {"step": step, "validation_accuracy": next(self.script), "validation_mean_length": 0.0,
                 "validation_reflection_words": 0.0}
        self.history.append(point)
        self._log(point)
        return point


@pytest.fixture(scope="module")
def guarded_run(trained_run, test_recipe, tmp_path_factory):
    """Six GRPO steps from the cold-start adapter under the scripted guard, then the stage's own
    keep-the-best step, in a work directory of this module."""
    store, _, refs = trained_run
    work = tmp_path_factory.mktemp("guarded") / "work"
    cfg = test_recipe.reasoning_rl.model_copy(update={"steps": 6, "save_steps": 6, "learning_rate": 2e-2})
    heldout = list(load_split(refs["task_data"], "validation"))[: GUARD.prompts]
    guard = ScriptedGuard(refs["base"].path, heldout, test_recipe.data.template, GUARD, cfg.max_completion_length,
                          work)
    funcs, weights = grpo_rewards(cfg.rewards)
    metrics = train_grpo(base=refs["base"].path, adapter=adapter_path(refs["cold_start"]), lora=test_recipe.model.lora,
                         dtype=test_recipe.model.dtype,
                         dataset=grpo.training_prompts(cfg, test_recipe, refs["task_data"]),
                         cfg=cfg, work=work, seed=0, reward_funcs=funcs, reward_weights=weights, callbacks=[guard],
                         report_to="none")
    metrics |= grpo.keep_best_adapter(guard, work, refs["base"].path)
    return guard, metrics, work


@pytest.mark.slow
def test_guard_stops_training_when_heldout_accuracy_collapses(guarded_run):
    guard, metrics, _ = guarded_run
    assert metrics["steps"] == 4, "training went on past the collapse at step 4"
    assert [p["step"] for p in metrics["guard_history"]] == [0, 2, 4]
    assert metrics["guard_stopped_at"] == 4
    assert metrics["guard_best_step"] == 2 and metrics["guard_best_accuracy"] == 0.75
    assert metrics["guard_final_accuracy"] == 0.2 and metrics["guard_restored_best"] is True


@pytest.mark.slow
def test_guard_publishes_the_best_adapter_not_the_last(guarded_run):
    guard, _, work = guarded_run
    published = load_file(str(Path(work) / ADAPTER / "adapter_model.safetensors"))
    best, last = guard.seen[2], guard.seen[4]
    assert published.keys() == best.keys()
    assert any(not torch.equal(best[k], last[k]) for k in best), "training did not move the adapter (nothing to tell)"
    assert all(torch.equal(published[k], best[k]) for k in best), "the published adapter is not step 2's"
    assert not (Path(work) / BEST_ADAPTER).exists()  # the guard's copy is not left among the outputs
    assert (Path(work) / ADAPTER / "tokenizer_config.json").is_file()  # a restored adapter still loads alone


def test_guard_keeps_the_final_adapter_when_accuracy_holds(own_run, test_recipe, tmp_path):
    """Without a fall below the best the guard never stops, and when training ends at its best the
    trained adapter stays."""
    from transformers import TrainerControl

    from core.modeling import trainable_model

    _, _, refs = own_run("guard")
    heldout = list(load_split(refs["task_data"], "validation"))[:2]
    guard = ScriptedGuard(refs["base"].path, heldout, test_recipe.data.template,
                          GuardConfig(every=1, margin=0.3, prompts=2), 8, tmp_path)
    guard.script = iter([0.5, 0.3, 0.6])  # falls, but not by more than the margin, then recovers
    model = trainable_model(refs["base"].path, None, test_recipe.model.lora)
    control = TrainerControl()
    for step in range(3):
        guard.check(step, model, control)
    assert not control.should_training_stop and guard.stopped_at is None
    (tmp_path / ADAPTER).mkdir()
    (tmp_path / ADAPTER / "marker").write_text("final")
    summary = grpo.keep_best_adapter(guard, tmp_path, refs["base"].path)
    assert summary["guard_best_step"] == 2 and summary["guard_restored_best"] is False
    assert (tmp_path / ADAPTER / "marker").read_text() == "final"
