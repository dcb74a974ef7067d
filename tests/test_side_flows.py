"""The three side flows, `r1-zero`, `distill` and `evaluate`, run end to end once each through Prefect
(the shared harness), joining the training chain's run id as a user would: each builds what it lacks,
reuses what the chain finished, evaluates, and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoModelForCausalLM

from core.layout import ADAPTER
from core.runstore import Ref
from stages.evaluation import load_results, stage_name


def _check_complete(store, run_id: str, ref: Ref) -> dict:
    """The stage's manifest is complete and every output it lists hashes to what it recorded."""
    manifest = store.manifest(run_id, ref.stage)
    assert manifest["status"] == "complete"
    assert manifest["outputs"], f"{ref.stage} recorded no outputs"
    assert store.verify(manifest) == [], f"{ref.stage} differs from its manifest"
    return manifest


def _check_eval(store, run_id: str, evaluated: str, ref: Ref, recipe) -> dict:
    """An evaluation stage's results: one pass@1 per held-out prompt (k samples each), in 0..1, whose
    mean is the overall figure."""
    assert ref.stage == stage_name(evaluated)
    _check_complete(store, run_id, ref)
    results = load_results(ref)
    by_prompt = results["pass_at_1_by_prompt"]
    assert len(by_prompt) == recipe.eval.prompts
    k = recipe.eval.samples
    assert all(0.0 <= p <= 1.0 and abs(p * k - round(p * k)) < 1e-9 for p in by_prompt)
    assert abs(results["overall"]["pass_at_1"] - sum(by_prompt) / len(by_prompt)) < 1e-9
    assert 0.0 < results["overall"]["mean_length"] <= recipe.eval.max_new_tokens
    return results


def test_flows_join_the_chain_run_and_reuse_its_finished_stages(side_flows, trained_run):
    store, run_id, refs = trained_run
    for name, result in side_flows.items():
        assert result["run_id"] == run_id, name
        assert Path(result["report"]).is_file(), f"{name} wrote no report"
    # the base and the chain's rejection-sampled data are read, not rebuilt
    assert Ref.from_dict(side_flows["r1-zero"]["refs"]["base"]) == refs["base"]
    assert Ref.from_dict(side_flows["distill"]["refs"]["rejection_sampling"]) == refs["rejection_sampling"]
    assert Ref.from_dict(side_flows["evaluate"]["evals"]["base"]) == refs["eval_base"]


def test_r1_zero_flow_trains_a_fresh_adapter_on_accuracy_and_format(side_flows, trained_run, test_recipe):
    store, run_id, refs = trained_run
    out = side_flows["r1-zero"]
    zero = Ref.from_dict(out["refs"]["r1_zero"])
    manifest = _check_complete(store, run_id, zero)
    assert "adapter" not in manifest["inputs"], "R1-Zero must start from the base, not an SFT adapter"
    assert manifest["inputs"]["base"]["sha256"] == refs["base"].sha256
    assert manifest["metrics"]["steps"] == test_recipe.r1_zero.steps
    history = [h for h in json.loads((Path(zero.path) / "log_history.json").read_text()) if "reward" in h]
    assert len(history) == test_recipe.r1_zero.steps
    assert {"rewards/accuracy/mean", "rewards/format/mean"} <= set(history[0])
    assert "rewards/language_consistency/mean" not in history[0]
    assert set(out["evals"]) == {"base", "r1_zero"}
    for evaluated, ref in out["evals"].items():
        _check_eval(store, run_id, evaluated, Ref.from_dict(ref), test_recipe)
    eval_manifest = store.manifest(run_id, stage_name("r1_zero"))
    assert eval_manifest["inputs"]["adapter"]["sha256"] == zero.sha256


def test_distill_flow_trains_a_smaller_student_two_ways(side_flows, trained_run, test_recipe):
    store, run_id, refs = trained_run
    out = side_flows["distill"]
    built = {name: Ref.from_dict(d) for name, d in out["refs"].items()}
    n_student = AutoModelForCausalLM.from_pretrained(built["student_base"].path).num_parameters()
    n_teacher = AutoModelForCausalLM.from_pretrained(refs["base"].path).num_parameters()
    assert n_student < n_teacher
    distilled = _check_complete(store, run_id, built["student_distilled"])
    rl_only = _check_complete(store, run_id, built["student_rl"])
    assert distilled["inputs"]["dataset"]["sha256"] == refs["rejection_sampling"].sha256
    assert "dataset" not in rl_only["inputs"] and "adapter" not in rl_only["inputs"]
    for manifest in (distilled, rl_only):
        assert manifest["inputs"]["base"]["sha256"] == built["student_base"].sha256
    for ref in (built["student_distilled"], built["student_rl"]):
        assert (Path(ref.path) / ADAPTER / "adapter_model.safetensors").is_file()
    assert set(out["evals"]) == {"student_base", "student_distilled", "student_rl"}
    for evaluated, ref in out["evals"].items():
        _check_eval(store, run_id, evaluated, Ref.from_dict(ref), test_recipe)


def test_evaluate_flow_evaluates_the_named_stage_against_the_base(side_flows, trained_run, test_recipe):
    store, run_id, refs = trained_run
    out = side_flows["evaluate"]
    assert set(out["evals"]) == {"base", "sft"}
    sft_eval = Ref.from_dict(out["evals"]["sft"])
    _check_eval(store, run_id, "sft", sft_eval, test_recipe)
    assert store.manifest(run_id, sft_eval.stage)["inputs"]["adapter"]["sha256"] == refs["sft"].sha256
