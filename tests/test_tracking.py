"""W&B tracking, checked on what W&B itself wrote offline (runs/<run_id>/wandb/offline-run-*/*.wandb):
one run per built stage, grouped by run id, the resolved config, TRL's metrics, and the artifact
lineage base -> cold start -> RL -> dataset -> SFT -> RL."""

from __future__ import annotations

import pytest
from wandb_offline import offline_runs

from core import tracking
from core.runstore import RunStore, StageError, StageResult


def _runs_by_stage(store: RunStore, run_id: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for run in offline_runs(store.root / run_id, wait_s=30):
        out.setdefault(run["job_type"], []).append(run)
    return out


def test_a_built_stage_is_one_offline_run_and_a_reused_one_none(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    store = RunStore(tmp_path)
    seen_report_to = []

    def build(work):
        seen_report_to.append(tracking.report_to())
        (work / "out.txt").write_text("hello")
        return StageResult(metrics={"rows": 3, "accuracy": 0.5, "nested": {"skip": 1}})

    assert tracking.report_to() == "none"
    ref = store.run_stage("r1", "task_data", {"size": 3}, {}, build, kind="dataset", track=tracking.stage_run).ref
    assert seen_report_to == ["wandb"] and tracking.report_to() == "none"
    again = store.run_stage("r1", "task_data", {"size": 3}, {}, build, kind="dataset", track=tracking.stage_run)
    assert again.ref == ref and again.reused and len(seen_report_to) == 1

    (run,) = offline_runs(tmp_path / "r1", wait_s=30)
    assert (run["group"], run["job_type"], run["name"]) == ("r1", "task_data", "r1/task_data")
    assert run["config"]["stage_config"] == {"size": 3} and run["exit_code"] == 0
    assert run["summary"]["stage/rows"] == 3 and run["summary"]["stage/accuracy"] == 0.5
    (art,) = run["logged_artifacts"]
    assert (art["name"], art["type"]) == ("r1-task_data", "dataset")
    assert art["metadata"]["sha256"] == ref.sha256 and art["metadata"]["version"] == ref.version
    assert "manifest.json" in art["files"]


def test_a_failed_stage_ends_its_run_with_an_error_and_logs_no_artifact(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    store = RunStore(tmp_path)

    def build(work):
        raise ValueError("boom")

    with pytest.raises(StageError):
        store.run_stage("r1", "cold_start", {}, {}, build, track=tracking.stage_run)
    (run,) = offline_runs(tmp_path / "r1", wait_s=30)
    assert run["exit_code"] != 0 and not run["logged_artifacts"]


def test_disabled_tracking_opens_no_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    RunStore(tmp_path).run_stage("r1", "task_data", {}, {}, lambda work: None, track=tracking.stage_run)
    assert not (tmp_path / "r1" / "wandb").exists()


@pytest.mark.slow
def test_pipeline_stages_group_metrics_and_lineage(trained_run):
    store, run_id, refs = trained_run
    runs = _runs_by_stage(store, run_id)
    runs.pop("report", None)  # the report's plots, once a flow has run on this chain (tested on its own)
    manifests = {m["stage"]: m for m in store.stages(run_id)}

    # one run per stage, grouped by the run id, named and typed by the stage, the resolved config attached
    # (the chain's stages, and those the side flows add when they have joined this run id first)
    assert set(runs) == set(manifests) and set(refs) <= set(runs)
    for stage, (run,) in runs.items():
        assert run["group"] == run_id and run["name"] == f"{run_id}/{stage}"
        assert run["project"] == "r1-pipeline" and run["exit_code"] == 0
        assert run["config"]["stage_config"] == manifests[stage]["config"]
        assert run["config"]["inputs"] == manifests[stage]["inputs"]

    # TRL's own logging went into the stage's run
    for stage in ("cold_start", "sft"):
        assert {"train/loss", "train/mean_token_accuracy"} <= runs[stage][0]["history_keys"], stage
    for stage in ("reasoning_rl", "all_scenario_rl"):
        keys = runs[stage][0]["history_keys"]
        assert {"train/reward", "train/rewards/accuracy/mean", "train/completions/mean_length",
                "train/rewards/reflection_words/mean", "train/rewards/language_consistency/mean"} <= keys, stage
    assert runs["eval_all_scenario_rl"][0]["summary"]["stage/pass_at_1"] >= 0

    # each stage's output is an artifact carrying its sha256 and version
    logged = {}
    for stage, (run,) in runs.items():
        (art,) = run["logged_artifacts"]
        ref = manifests[stage]["ref"]
        assert art["metadata"]["sha256"] == ref["sha256"] and art["metadata"]["version"] == ref["version"]
        logged[stage] = art
    assert logged["cold_start"]["type"] == "model" and logged["rejection_sampling"]["type"] == "dataset"
    assert logged["eval_base"]["type"] == "eval" and "eval.json" in logged["eval_base"]["files"]

    # lineage: each stage names the exact artifact (name + digest) it was built from
    def built_from(stage: str, name: str) -> str:
        inp = runs[stage][0]["config"]["input_artifacts"][name]
        producer = next(s for s, a in logged.items() if a["name"] == inp["artifact"])
        assert inp["digest"] == logged[producer]["digest"]
        return producer

    assert built_from("cold_start", "base") == "base"
    assert built_from("reasoning_rl", "adapter") == "cold_start"
    assert built_from("rejection_sampling", "adapter") == "reasoning_rl"
    assert built_from("sft", "dataset") == "rejection_sampling"
    assert built_from("sft", "adapter") == "reasoning_rl"
    assert built_from("all_scenario_rl", "adapter") == "sft"
    assert built_from("all_scenario_rl", "reward_model") == "reward_model"
    # offline, W&B refuses use_artifact: the inputs live in the config instead
    assert all(not run["used_artifacts"] for (run,) in runs.values())


def test_report_plots_are_one_run_in_the_group_logged_once_per_content(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flows.report import log_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    png = tmp_path / "reward.png"
    plt.figure(figsize=(2, 2)).savefig(png)
    assert log_to_wandb(tmp_path, "r1", {"reward": png}, drawn_from="v1")
    assert not log_to_wandb(tmp_path, "r1", {"reward": png}, drawn_from="v1")  # a resume: unchanged
    (run,) = offline_runs(tmp_path / "r1", wait_s=30)
    assert (run["group"], run["job_type"], run["name"]) == ("r1", "report", "r1/report")
    assert "report/reward/_type" in run["history_keys"] and run["exit_code"] == 0  # an image, as W&B logs one
    assert log_to_wandb(tmp_path, "r1", {"reward": png}, drawn_from="v2")  # a stage rebuilt
    assert len(offline_runs(tmp_path / "r1", wait_s=30)) == 2
