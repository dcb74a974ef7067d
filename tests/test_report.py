"""The run report: PNG plots per metric across training stages, the eval chart, and index.md."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import pytest

from core.runstore import RunStore, StageResult
from flows import report


def _grpo_history(steps: int, scale: float) -> list[dict]:
    return [{"step": s, "loss": 0.1 * s, "reward": scale * s, "rewards/accuracy/mean": scale * s / 4,
             "rewards/format/mean": 0.5, "rewards/language_consistency/mean": 0.9,
             "rewards/reflection_words/mean": 0.1 * s, "rewards/reflection_rate/mean": 0.01 * s,
             "rewards/reflected/mean": 0.05 * s,
             "completions/mean_length": 20 + s} for s in range(1, steps + 1)] + [{"step": steps, "train_runtime": 1.0}]


def _fake_run(tmp_path) -> tuple[RunStore, str]:
    store = RunStore(tmp_path)

    def stage(name, history=None, eval_json=None):
        def build(work):
            if history is not None:
                (work / "log_history.json").write_text(json.dumps(history))
            if eval_json is not None:
                (work / "eval.json").write_text(json.dumps(eval_json))
            return StageResult()
        store.run_stage("r", name, {}, {}, build)

    stage("cold_start", [{"step": s, "loss": 2.0 / s, "mean_token_accuracy": 0.5 + 0.01 * s} for s in (1, 2, 3)])
    stage("reasoning_rl", _grpo_history(4, 0.2))
    stage("all_scenario_rl", _grpo_history(3, 0.3))
    for name, acc in (("base", 0.1), ("all_scenario_rl", 0.4)):
        stage(f"eval_{name}", eval_json={"overall": {"pass_at_1": acc, "cons_at_k": acc, "greedy_accuracy": acc,
                                                     "mean_length": 30.0, "language_consistency": 0.9,
                                                     "reflection_words": 0.5}, "per_task": {}, "k": 4})
    return store, "r"


def test_report_reads_histories_and_evals_in_pipeline_order(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    store, run_id = _fake_run(tmp_path)
    hists = report.histories(store, run_id)
    assert list(hists) == ["cold_start", "reasoning_rl", "all_scenario_rl"]
    assert all("train_runtime" not in e for h in hists.values() for e in h)
    assert report.reward_functions(hists) == ["accuracy", "format", "language_consistency"]
    assert list(report.eval_results(store, run_id)) == ["base", "all_scenario_rl"]


def test_report_writes_every_plot_and_an_index_linking_them(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    store, run_id = _fake_run(tmp_path)
    index = report.build_report(store, run_id)
    text = index.read_text()
    for name in ("reward", "rewards_per_function", "accuracy", "response_length", "reflection",
                 "language_consistency", "loss", "eval"):
        png = index.parent / f"{name}.png"
        height, width, _ = mpimg.imread(png).shape
        assert height > 300 and width > 600, name
        assert f"]({name}.png)" in text
    assert "| base |" in text and "| all_scenario_rl |" in text  # eval table rows
    assert "reasoning_rl" in text  # stage table


def test_report_html_is_one_page_with_the_plots_inside(tmp_path, monkeypatch):
    import base64
    import re

    monkeypatch.setenv("WANDB_MODE", "disabled")
    store, run_id = _fake_run(tmp_path)
    page = (report.build_report(store, run_id).parent / report.HTML).read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "<td>all_scenario_rl</td>" in page
    images = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', page)
    assert len(images) == 8
    for src, _ in images:  # embedded, not linked: the file opens anywhere, the plots with it
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")


@pytest.mark.slow
def test_report_of_a_trained_run(trained_run):
    store, run_id, _ = trained_run
    index = report.build_report(store, run_id)
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert {"reward.png", "rewards_per_function.png", "accuracy.png", "response_length.png", "reflection.png",
            "language_consistency.png", "loss.png", "eval.png"} <= pngs
    text = index.read_text()
    assert all(f"]({p})" in text for p in pngs)


def test_checks_table_shows_whether_checking_pays_per_stage():
    results = {"base": {"overall": {"reflection_rate": 0.05, "accuracy_reflected": None, "accuracy_unreflected": 0.2,
                                    "mean_length_correct": 14.0, "mean_length_incorrect": 12.5}},
               "r1_zero": {"overall": {"reflection_rate": 0.4, "accuracy_reflected": 0.75, "accuracy_unreflected": 0.5,
                                       "mean_length_correct": 70.25, "mean_length_incorrect": 61.0}}}
    lines = report.checks_table(results).splitlines()
    assert lines[0].startswith("| stage | responses with a check | accuracy with a check | accuracy without |")
    assert lines[2] == "| base | 0.050 | - | 0.200 | 14.0 | 12.5 |"  # no checked response: no accuracy to show
    assert lines[3] == "| r1_zero | 0.400 | 0.750 | 0.500 | 70.2 | 61.0 |"
