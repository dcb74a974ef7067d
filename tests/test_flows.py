"""The Prefect side: deployments, task options, and the r1-pipeline run through a real local server
and process worker (deploy, `prefect deployment run`, resume with the same run id)."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from core.config import RecipeError
from core.runstore import StageError
from data.sources import DataError

ROOT = Path(__file__).resolve().parent.parent
TRAINING_STAGES = ("task_data", "base", "cold_start", "reasoning_rl", "rejection_sampling", "sft", "reward_model",
                   "all_scenario_rl", "merged")
EVALUATED = ("base", "cold_start", "reasoning_rl", "sft", "all_scenario_rl")
# A line of `dis` output: an optional line number, the offset, an opcode name (LOAD_GLOBAL, ...).
DISASSEMBLY = re.compile(r"^\s*(\d+\s+)?\d+\s+[A-Z][A-Z_]{3,}\b|\b(LOAD|STORE)_(GLOBAL|FAST|NAME|ATTR|CONST)\b",
                         re.MULTILINE)


def disassembly_lines(text: str) -> list[str]:
    return [m.group(0) for m in DISASSEMBLY.finditer(text)]


def test_the_disassembly_pattern_catches_what_the_logs_showed():
    assert disassembly_lines("INFO prefect.task_runs: 160           2 LOAD_GLOBAL              0 (pa)")
    assert disassembly_lines("             18 LOAD_GLOBAL              0 (OFFSET)")
    assert not disassembly_lines("reasoning_rl: built v1 in 12.3 s; steps 4, train_loss -0.008")


# --- fast checks -------------------------------------------------------------------------------


def test_prefect_yaml_deploys_exactly_the_graphs_flows_for_each_recipe():
    """The flows, the CLI's commands and the deployments all come from the graph's flow list:
    prefect.yaml, a file, must name exactly those flows (and `evaluate` and the `lab`), for both recipes."""
    from prefect.flows import load_flow_from_entrypoint

    from flows.training import FLOWS
    from shell.cli import COMMANDS
    from stages import graph

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    found = set()
    for d in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
        found.add(f"{flow.name}/{d['name']}")
        assert d["work_pool"]["name"] == "r1-local"
        assert "recipe" in d["parameters"]
        if flow.name in graph.FLOWS:
            assert d["entrypoint"] == f"flows/training.py:{graph.FLOWS[flow.name].entrypoint}"
    names = [*graph.FLOWS, "evaluate", "lab"]
    assert found == {f"{name}/{recipe}" for name in names for recipe in ("pocket", "pocket-test")}
    assert set(FLOWS) == set(graph.FLOWS) == {spec.name for spec in COMMANDS.values()}


class _FailedState:
    def __init__(self, exc: BaseException):
        self.exc = exc

    def result(self):
        raise self.exc


def _wrapped(cause: BaseException) -> StageError:
    try:
        raise StageError("run/tasks failed") from cause
    except StageError as exc:
        return exc


def test_retries_only_where_a_retry_can_help():
    from flows import prefect_tasks as t
    from stages import graph

    assert t.stage_task(graph.BY_NAME["task_data"]).retries == 1
    assert t.stage_task(graph.evaluation_of("sft")).retries == 1
    for name in ("base", "cold_start", "reasoning_rl", "rejection_sampling", "sft", "reward_model",
                 "all_scenario_rl", "merged", "r1_zero", "student_base", "student_distilled", "student_rl"):
        task = t.stage_task(graph.BY_NAME[name])
        assert not task.retries and task.name == name
    retry = t.not_a_config_error
    assert retry(None, None, _FailedState(OSError("disk hiccup")))
    assert not retry(None, None, _FailedState(_wrapped(DataError("data.sources[0]: no rows"))))
    assert not retry(None, None, _FailedState(RecipeError("configs/x.yaml: bad key")))


def test_task_run_names_show_recipe_run_and_stage(test_recipe, tmp_path):
    from core.runstore import RunStore
    from core.stage import StageCall
    from flows import prefect_tasks as t
    from stages import graph

    for spec, name in ((graph.BY_NAME["cold_start"], "cold_start"), (graph.evaluation_of("sft"), "eval_sft")):
        call = StageCall(spec, test_recipe, RunStore(tmp_path), "pocket-test-1234")
        task = t.stage_task(spec)
        assert task.task_run_name.format(call=call, recipe="pocket-test") == f"pocket-test · pocket-test-1234 · {name}"


# --- the real thing: server, worker, deployment ------------------------------------------------


@pytest.fixture(scope="module")
def local_prefect(tmp_path_factory, pocket_run):
    """A real Prefect server + process worker (temporary PREFECT_HOME, free port) with the project's
    deployments; flow runs write to the pocket_run store (its base is cached there). Always stopped."""
    from shell import prefect_server

    store = pocket_run[0]
    home = tmp_path_factory.mktemp("prefect-home")
    local = None
    try:
        local = prefect_server.start(home, prefect_server.free_port(), timeout=120,
                                     extra_env={"R1_RUNS_DIR": str(store.root), "WANDB_MODE": "offline",
                                                "OMP_NUM_THREADS": "1"})
        yield local, store
    finally:
        stopped = prefect_server.stop(home)
        assert local is None or set(stopped) == {"server", "worker", "reports"}
        for pid in (local.pids.values() if local else []):
            assert not prefect_server._alive(pid)


def _deployment_run(local, *params: str, timeout: int = 300) -> subprocess.CompletedProcess:
    args = [str(ROOT / ".venv" / "bin" / "prefect"), "deployment", "run", "r1-pipeline/pocket-test", "--watch"]
    for p in params:
        args += ["--param", p]
    return subprocess.run(args, env=local.env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _api(local, path: str, body: dict) -> list[dict]:
    req = urllib.request.Request(f"{local.api_url}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _flow_run(local, run_id: str, index: int) -> dict:
    runs = _api(local, "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC"})
    mine = [r for r in runs if f" · {run_id}" in r["name"]]
    return mine[index]


def _logs(local, flow_run_id: str) -> list[str]:
    """Every log line of a flow run and its task runs, as the UI shows them."""
    lines, offset = [], 0
    while True:
        page = _api(local, "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                            "sort": "TIMESTAMP_ASC", "offset": offset, "limit": 200})
        lines += [entry["message"] for entry in page]
        if len(page) < 200:
            return lines
        offset += len(page)


def _stage_tables(local, flow_run_id: str) -> dict[str, dict[str, str]]:
    arts = _api(local, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    tables = {}
    for a in arts:
        if a["type"] == "table":
            data = json.loads(a["data"]) if isinstance(a["data"], str) else a["data"]
            tables[a["key"]] = {row["field"]: row["value"] for row in data}
    return tables | {a["key"]: {"type": a["type"], "data": str(a["data"])} for a in arts if a["type"] != "table"}


@pytest.mark.slow
def test_pipeline_through_the_deployment_then_resume(local_prefect):
    local, store = local_prefect
    before = {r["run_id"] for r in store.runs()}

    first = _deployment_run(local)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    (run_id,) = {r["run_id"] for r in store.runs()} - before
    flow_run = _flow_run(local, run_id, 0)
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["name"] == f"r1-pipeline · pocket-test · {run_id}"

    # every stage built, evaluated, and published as a Prefect artifact
    finished = {m["stage"]: m for m in store.stages(run_id)}
    assert set(TRAINING_STAGES) <= set(finished)
    assert {f"eval_{n}" for n in EVALUATED} <= set(finished)
    artifacts = _stage_tables(local, flow_run["id"])
    for stage in TRAINING_STAGES + tuple(f"eval_{n}" for n in EVALUATED):
        table = artifacts[f"pocket-test-{stage.replace('_', '-')}"]
        assert table["output"] == finished[stage]["ref"]["path"]
        assert table["version"] == finished[stage]["ref"]["version"]
        assert table["reused"] == "False"
    assert artifacts["pocket-test-eval"]["type"] == "markdown"
    assert "all_scenario_rl" in artifacts["pocket-test-eval"]["data"]
    report = store.root / run_id / "report" / "index.md"
    assert report.is_file() and (report.parent / "eval.png").is_file()
    # the report link opens in a browser: http from the report server, the plots inside the page
    (link,) = re.findall(r"\((http://[^)]+)\)", artifacts["pocket-test-report"]["data"])
    assert link == f"{local.extra_env['R1_REPORT_URL']}/{run_id}/report/index.html"
    with urllib.request.urlopen(link, timeout=10) as resp:
        page = resp.read().decode()
    assert "<td>all_scenario_rl</td>" in page and page.count('<img src="data:image/png;base64,') >= 8

    # the UI's logs and the terminal: every stage's start and end, no bytecode
    logs = _logs(local, flow_run["id"])
    assert not disassembly_lines("\n".join(logs)) and not disassembly_lines(first.stdout + first.stderr)
    for stage in TRAINING_STAGES:
        assert f"{stage}: started" in logs and any(line.startswith(f"{stage}: built v") for line in logs), stage

    # the same run id again: every stage is reused, nothing retrains, no new W&B run
    wandb_runs = sorted((store.root / run_id / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == len(finished) + 1  # a run per stage, and the report's plots
    second = _deployment_run(local, f"run_id={run_id}")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    again = {m["stage"]: m for m in store.stages(run_id)}
    assert {s: m["finished_at"] for s, m in again.items()} == {s: m["finished_at"] for s, m in finished.items()}
    assert sorted((store.root / run_id / "wandb").glob("offline-run-*")) == wandb_runs
    rerun = _flow_run(local, run_id, 1)
    assert rerun["state_type"] == "COMPLETED"
    assert re.fullmatch(rf"r1-pipeline · pocket-test · {run_id} · resume \d\d:\d\d:\d\d", rerun["name"])
    assert all(t["reused"] == "True" for k, t in _stage_tables(local, rerun["id"]).items() if "reused" in t)
    # the resumed run's logs name every reused stage with its version
    logs = _logs(local, rerun["id"])
    for stage in TRAINING_STAGES + tuple(f"eval_{n}" for n in EVALUATED):
        version = finished[stage]["ref"]["version"]
        assert any(line.startswith(f"{stage}: reused v{version} ") for line in logs), (stage, logs)


@pytest.mark.slow
def test_a_config_error_fails_before_any_training(local_prefect):
    local, store = local_prefect
    before = {r["run_id"] for r in store.runs()}
    failed = _deployment_run(local, 'overrides=["cold_start.steps=-1"]', timeout=120)
    assert failed.returncode == 1
    assert {r["run_id"] for r in store.runs()} == before  # no run directory, no stage
    runs = _api(local, "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC", "limit": 1})
    assert runs[0]["state_type"] == "FAILED"
    assert not _api(local, "/task_runs/filter", {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}})
