"""Bad input is caught before any training: each case runs the real r1-pipeline flow (a temporary
Prefect server for the module) and must fail with a message naming the file, key or value and what
was expected, leaving no stage directory beyond `task_data`.

Recipe errors, bad data rows and reward names have their own unit tests (test_config.py,
test_sources.py, test_rewards_registry.py); here they go through the flow as a user meets them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import RecipeError
from core.runstore import RunStore, StageError
from stages.preflight import PreflightError, check_prompt_lengths, check_recipe

ROOT = Path(__file__).resolve().parent.parent
TEST_RECIPE = ROOT / "configs" / "pocket-test.yaml"
ROWS, BAD_LINE, LONG_LINE = 3000, 1517, 2400


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def runs(tmp_path, monkeypatch, harness):
    """A fresh run store for the flow, W&B off (nothing to track in runs that must not start)."""
    root = tmp_path / "runs"
    monkeypatch.setenv("R1_RUNS_DIR", str(root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real (untrained) Qwen2 model directory with a chat template and a 128-token context."""
    from core.config import PocketConfig
    from pocket.pretrain import build_model
    from pocket.tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("tiny-model")
    tok = build_tokenizer([f"What is {a} + {b}? The answer is {a + b}." for a in range(30) for b in range(30)], 300)
    cfg = PocketConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64,
                       max_position_embeddings=128, seed=0)
    build_model(cfg, tok).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def recipe_file(tmp_path: Path, change=None, name="bad.yaml") -> Path:
    data = yaml.safe_load(TEST_RECIPE.read_text())
    if change:
        change(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def big_jsonl(path: Path, bad: dict[int, bytes]) -> Path:
    """ROWS rows of {prompt, answer}; the given 1-based lines replaced by raw bytes."""
    with open(path, "wb") as fh:
        for line in range(1, ROWS + 1):
            row = json.dumps({"prompt": f"{line} + {line % 7} =", "answer": str(line + line % 7)}).encode()
            fh.write(bad.get(line, row) + b"\n")
    return path


def file_source(path: Path, **extra):
    def change(data):
        data["data"]["sources"] = [{"kind": "file", "path": str(path), "task": "sums", **extra}]
        data["data"]["test_size"] = 20
        data["data"]["validation_size"] = 10
        data["data"]["transfer"] = data["data"]["longer"] = []
    return change


def run_flow(recipe: Path, overrides: list[str] | None = None):
    from flows.training import r1_pipeline

    return r1_pipeline(recipe=str(recipe), overrides=overrides or [])


def stage_dirs(root: Path) -> set[str]:
    """Every stage directory (finished or not) of every run in the store."""
    if not root.is_dir():
        return set()
    return {p.name.lstrip(".").removesuffix(".work") for run in root.iterdir() if run.is_dir() and run.name != "cache"
            for p in run.iterdir() if p.is_dir() and p.name != "wandb"}


def t5_dir(tmp_path: Path) -> Path:
    """An encoder-decoder (T5) config: a real model, but not a causal LM."""
    model = tmp_path / "t5"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 32}))
    return model


# --- recipe, model and reward errors: caught in start(), before a run directory exists -----------


RECIPE_CASES = {
    "unknown key": (lambda d: d["cold_start"].update(stepz=3), [],
                    ["cold_start.stepz: unknown key 'stepz' (did you mean 'steps'?)", "expected one of:"]),
    "wrong type": (None, ["cold_start.steps=ten"], ["cold_start.steps: Input should be a valid integer", "'ten'"]),
    "missing model path": (None, ["model.base=/no/such/model", "cold_start.dataset=cs.jsonl"],
                           ["model.base: local model path '/no/such/model' does not exist",
                            "expected an HF model directory"]),
    "hub model not available offline": (None, ["model.base=nobody-r1/no-such-model", "cold_start.dataset=cs.jsonl"],
                                        ["model.base: model 'nobody-r1/no-such-model': not a model directory or hub id"]),
    "unknown reward": (None, ["reasoning_rl.rewards=[{name: accuracyy}]"],
                       ["reasoning_rl.rewards: unknown reward 'accuracyy'; known rewards:", "accuracy"]),
    "unknown stress stage": (None, ["eval.stress_stages=[base, sftt]"],
                             ["eval.stress_stages: 'sftt' is not an evaluated stage (one of base, r1_zero, cold_start"]),
    "unknown stage_samples stage": (None, ["eval.stage_samples={sft: 4, rl: 4}"],
                                    ["eval.stage_samples: 'rl' is not an evaluated stage (one of base"]),
    "stage_samples below one": (lambda d: d.setdefault("eval", {}).update(stage_samples={"sft": 0}), [],
                                ["eval.stage_samples.sft: Input should be greater than 0 (got 0)"]),
    "num_generations does not divide the batch": (None, ["reasoning_rl.num_generations=3"],
                                                  ["num_generations (3) must divide the generation batch",
                                                   "batch_size * gradient_accumulation_steps = 16"]),
}


@pytest.mark.parametrize("case", RECIPE_CASES)
def test_recipe_model_and_reward_errors_stop_before_any_run(case, runs, tmp_path):
    change, overrides, expected = RECIPE_CASES[case]
    with pytest.raises(RecipeError) as err:
        run_flow(recipe_file(tmp_path, change), overrides)
    for text in expected:
        assert text in str(err.value)
    if case == "wrong type":  # an override's error names the override, not the file
        assert "from override 'cold_start.steps=ten'" in str(err.value)
    else:
        assert str(tmp_path / "bad.yaml") in str(err.value)  # names the file
    assert stage_dirs(runs) == set() and not [p for p in runs.glob("*") if p.name != "cache"]


def test_a_model_that_is_not_a_causal_lm(runs, tmp_path):
    model = t5_dir(tmp_path)
    with pytest.raises(PreflightError) as err:
        run_flow(recipe_file(tmp_path), [f"model.base={model}", "cold_start.dataset=cs.jsonl"])
    assert f"model.base: model '{model}': model_type 't5' is not a causal language model" in str(err.value)
    assert "expected e.g. qwen2, llama" in str(err.value)
    assert stage_dirs(runs) == set()


def test_every_problem_is_listed_at_once(tmp_path):
    from core.config import load_recipe

    recipe = load_recipe(TEST_RECIPE, [f"model.base={t5_dir(tmp_path)}", "cold_start.dataset=cs.jsonl",
                                       "reasoning_rl.rewards=[{name: nope}]", "distill.student_model=/no/student"])
    with pytest.raises(PreflightError) as err:
        check_recipe(recipe, "r.yaml")
    lines = str(err.value).splitlines()
    assert lines[0] == "r.yaml: the run cannot start"
    assert [line.strip().split(":")[0] for line in lines[1:]] == ["reasoning_rl.rewards", "distill.student_model",
                                                                  "model.base"]


# --- bad data: caught by the task_data stage (file and line), before any model is loaded ----------


DATA_CASES = {
    "missing column": ({BAD_LINE: b'{"prompt": "1 + 2 =", "solution": "3"}'},
                       f":{BAD_LINE}: missing column(s) ['answer']; the row has ['prompt', 'solution']"),
    "empty row": ({BAD_LINE: b"   "}, f":{BAD_LINE}: empty line; expected a JSON object"),
    "invalid UTF-8": ({BAD_LINE: b'{"prompt": "caf\xe9 1 + 2 =", "answer": "3"}'},
                      f":{BAD_LINE}: invalid UTF-8 at byte 15; expected UTF-8 text"),  # the \xe9
    "empty prompt": ({BAD_LINE: b'{"prompt": "", "answer": "3"}'},
                     f":{BAD_LINE}: column 'prompt' is empty; expected the prompt text"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_a_bad_row_in_a_large_file_stops_with_its_line(case, runs, tmp_path):
    bad, expected = DATA_CASES[case]
    data = big_jsonl(tmp_path / "big.jsonl", bad)
    with pytest.raises(StageError) as err:
        run_flow(recipe_file(tmp_path, file_source(data)))
    assert f"{data}{expected}" in str(err.value)
    assert "1 bad row(s) (set on_bad_row: skip to drop them)" in str(err.value)
    assert stage_dirs(runs) <= {"task_data"} and not list(runs.glob("*/task_data"))  # it never finished


def test_skipped_row_and_a_prompt_longer_than_the_context(runs, tmp_path, tiny_model, caplog):
    """on_bad_row: skip drops the bad line (logged with its number) and the run goes on, then the
    preflight after the task_data stage finds a prompt the model's 128-token context cannot hold."""
    long_prompt = " + ".join(["1"] * 150) + " ="
    data = big_jsonl(tmp_path / "big.jsonl", {
        BAD_LINE: b'{"prompt": "1 + 2 ="}',
        LONG_LINE: json.dumps({"prompt": long_prompt, "answer": "150"}).encode(),
    })
    caplog.set_level(logging.WARNING)
    with pytest.raises(PreflightError) as err:
        run_flow(recipe_file(tmp_path, file_source(data, on_bad_row="skip")),
                 [f"model.base={tiny_model}", "cold_start.dataset=cs.jsonl"])
    assert f"{data}:{BAD_LINE}: missing column(s) ['answer']" in caplog.text
    msg = str(err.value)
    assert "1 of " in msg and "prompts are too long" in msg and "'1 + 1 + 1" in msg
    assert f"max_position_embeddings 128 of {tiny_model} minus" in msg
    assert "expected every prompt <= 80 tokens" in msg  # 128 - the longest generation (48)
    assert stage_dirs(runs) == {"task_data"}  # no base, no training stage
    (tasks,) = RunStore(runs).stages(next(p.name for p in runs.iterdir() if p.name != "cache"))
    m = tasks["metrics"]
    assert m["train_rows"] + m["validation_rows"] + m["test_rows"] == ROWS - 1


def test_prompt_check_passes_and_reports_figures(pocket_run, test_recipe):
    store, _, task_data_ref, base_ref = pocket_run
    figures = check_prompt_lengths(test_recipe, task_data_ref, base_ref.path)
    assert figures["context"] == 256 and 10 < figures["longest_train_prompt_tokens"] < 256 - 48
    tight = test_recipe.model_copy(update={"eval": test_recipe.eval.model_copy(update={"max_new_tokens": 250})})
    with pytest.raises(PreflightError, match=r"test prompts are too long.*eval\.max_new_tokens=250 leaves 6"):
        check_prompt_lengths(tight, task_data_ref, base_ref.path)


def test_the_cli_prints_the_error_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({"R1_RUNS_DIR": str(tmp_path / "runs"), "PREFECT_HOME": str(tmp_path / "prefect"),
                "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"})
    proc = subprocess.run([sys.executable, "-m", "shell.cli", "pipeline", "--recipe", str(TEST_RECIPE),
                           "--set", "reasoning_rl.rewards=[{name: accuracyy}]"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"error: {TEST_RECIPE}: the run cannot start\n  reasoning_rl.rewards: unknown reward 'accuracyy'" \
        in proc.stderr
    assert stage_dirs(tmp_path / "runs") == set()
