"""Two runs started at the same time on a fresh cache: each gets its own run directory, the pocket
base is built once (under the cache lock) while the other process waits, and both finish.

The two processes run the first two stages of the pipeline (task_data + base) as the flow does; the
run store's own unit tests cover run ids and the lock with many processes (test_runstore.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from core.runstore import RunStore

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "pocket-test.yaml"
# a fresh, small pocket base: a few seconds to build, so the second process really has to wait
OVERRIDES = ["model.pocket.steps=60", "model.pocket.corpus_documents=800", "data.test_size=8", "data.validation_size=8"]
TASKS_AND_BASE = textwrap.dedent("""
    import logging, sys, time
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from core.config import load_recipe
    from core.runstore import RunStore
    from pathlib import Path
    from stages import graph, runner
    recipe = load_recipe(sys.argv[1], sys.argv[5:])
    store = RunStore(sys.argv[2])
    Path(sys.argv[4]).touch()  # ready; start together on the go signal
    while not Path(sys.argv[3]).exists():
        time.sleep(0.01)
    run_id = store.new_run_id(recipe.name)
    base_ref = runner.build([graph.BASE], recipe, store, run_id)[graph.BASE]
    print("RESULT", run_id, base_ref.path, flush=True)
""")


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.mark.slow
def test_two_runs_at_once_get_their_own_directories_and_build_the_base_once(tmp_path, processes):
    root = tmp_path / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", R1_TEST_CONCURRENCY=uuid.uuid4().hex)
    go = tmp_path / "go"
    logs, ready = [tmp_path / f"proc-{i}.log" for i in range(2)], [tmp_path / f"ready-{i}" for i in range(2)]
    for log, flag in zip(logs, ready, strict=True):
        with open(log, "wb") as out:
            processes.append(subprocess.Popen([sys.executable, "-c", TASKS_AND_BASE, str(RECIPE), str(root), str(go),
                                               str(flag), *OVERRIDES], cwd=ROOT, env=env, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))
    start_together(processes, ready, go)
    for proc, log in zip(processes, logs, strict=True):
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    texts = [log.read_text() for log in logs]

    # distinct run directories, each with its own finished stages
    results = [next(line.split()[1:] for line in t.splitlines() if line.startswith("RESULT")) for t in texts]
    (id_a, base_a), (id_b, base_b) = results
    assert id_a != id_b
    store = RunStore(root)
    for run_id in (id_a, id_b):
        stages = {m["stage"]: m for m in store.stages(run_id)}
        assert set(stages) == {"task_data", "base"}
        assert all(store.verify(m) == [] for m in stages.values())
        assert stages["task_data"]["ref"]["path"] == str(root / run_id / "task_data")

    # one pocket base, built by exactly one of the two, which the other waited for and reused
    assert base_a == base_b
    builds = sum(t.count("pocket.pretrain: pocket base:") for t in texts)
    assert builds == 1, texts
    cache = root / "cache" / "pocket-base"
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [Path(base_a).name]
    assert not [p for p in cache.iterdir() if ".work-" in p.name]  # no half-built copy left behind
    # the one that did not build said it waited on the base's lock (an event, not inferred from timestamps)
    waited = [t for t in texts if re.search(r"core\.atomic: waiting for \S*pocket-base\S*\.lock", t)]
    assert len(waited) == 1 and "pocket.pretrain: pocket base:" not in waited[0], texts


def start_together(processes: list[subprocess.Popen], ready: list[Path], go: Path, timeout: float = 600) -> None:
    """Wait until every process has said it is ready, then let them all go. The deadline only
    catches a hang: on a loaded 2-core machine the imports alone can take minutes."""
    deadline = time.monotonic() + timeout
    while not all(f.exists() for f in ready):
        assert all(p.poll() is None for p in processes), "a process exited before it was ready"
        assert time.monotonic() < deadline, "the processes never got ready"
        time.sleep(0.05)
    go.touch()


SAME_RUN = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from core.config import load_recipe
    from core.runstore import RunStore
    from core.stage import StageCall
    from stages import graph, runner
    recipe = load_recipe(sys.argv[1], sys.argv[5:])
    store = RunStore(sys.argv[2])
    Path(sys.argv[4]).touch()  # ready; start together on the go signal
    while not Path(sys.argv[3]).exists():
        time.sleep(0.01)
    refs = {}
    for spec in graph.needed(["cold_start"], recipe):
        inputs = {n: refs[s] for n, s in spec.inputs_for(recipe).items()}
        outcome = spec.run(StageCall(spec, recipe, store, "one-run-id", inputs))
        refs[spec.name] = outcome.ref
        print("OUTCOME", spec.name, "reused" if outcome.reused else "built", flush=True)
""")


@pytest.mark.slow
def test_two_processes_on_one_run_id_report_one_built_and_one_reused_per_stage(tmp_path, processes):
    """Both processes ask for the same stages of the same run at the same time; at each stage one builds
    while the other waits on the stage's lock, and the waiting one must say it reused, not built."""
    root, go = tmp_path / "runs", tmp_path / "go"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", R1_TEST_CONCURRENCY=uuid.uuid4().hex)
    logs, ready = [tmp_path / f"proc-{i}.log" for i in range(2)], [tmp_path / f"ready-{i}" for i in range(2)]
    for log, flag in zip(logs, ready, strict=True):
        with open(log, "wb") as out:
            processes.append(subprocess.Popen([sys.executable, "-c", SAME_RUN, str(RECIPE), str(root), str(go),
                                               str(flag), *OVERRIDES, "cold_start.steps=2", "cold_start.examples=16"],
                                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
    start_together(processes, ready, go)
    for proc, log in zip(processes, logs, strict=True):
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]

    # what the run store logged, and what it returned to the caller (a flow publishes that)
    expected = {stage: ["built", "reused"] for stage in ("task_data", "base", "cold_start_data", "cold_start")}
    for pattern in (r"core\.runstore: one-run-id/(\w+): (built|reused)", r"OUTCOME (\w+) (built|reused)"):
        said: dict[str, list[str]] = {}
        for log in logs:
            for stage, outcome in re.findall(pattern, log.read_text()):
                said.setdefault(stage, []).append(outcome)
        assert {stage: sorted(outcomes) for stage, outcomes in said.items()} == expected, pattern
    store = RunStore(root)
    assert {m["stage"] for m in store.stages("one-run-id")} == {"task_data", "base", "cold_start_data", "cold_start"}
