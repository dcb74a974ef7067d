"""Two runs started at the same time on a fresh cache: each gets its own run directory, the pocket
base is built once (under the cache lock) while the other process waits, and both finish.

The two processes run the first two stages of the pipeline (tasks + base) as the flow does; the
run store's own unit tests cover run ids and the lock with many processes (test_runstore.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from core.runstore import RunStore

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "pocket-test.yaml"
# a fresh, small pocket base: a few seconds to build, so the second process really has to wait
OVERRIDES = ["model.pocket.steps=60", "model.pocket.corpus_documents=800", "data.heldout_size=8"]
TASKS_AND_BASE = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from core.config import load_recipe
    from core.runstore import RunStore
    from stages import base, tasks
    recipe = load_recipe(sys.argv[1], sys.argv[3:])
    store = RunStore(sys.argv[2])
    run_id = store.new_run_id(recipe.name)
    tasks_ref = tasks.run(recipe, store, run_id)
    base_ref = base.run(recipe, store, run_id, tasks_ref)
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


def test_two_runs_at_once_get_their_own_directories_and_build_the_base_once(tmp_path, processes):
    root = tmp_path / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", R1_TEST_CONCURRENCY=uuid.uuid4().hex)
    logs = [tmp_path / f"proc-{i}.log" for i in range(2)]
    for log in logs:
        with open(log, "wb") as out:
            processes.append(subprocess.Popen([sys.executable, "-c", TASKS_AND_BASE, str(RECIPE), str(root),
                                               *OVERRIDES], cwd=ROOT, env=env, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))
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
        assert set(stages) == {"tasks", "base"}
        assert all(store.verify(m) == [] for m in stages.values())
        assert stages["tasks"]["ref"]["path"] == str(root / run_id / "tasks")

    # one pocket base, built by exactly one of the two, which the other waited for and reused
    assert base_a == base_b
    builds = sum(t.count("stages.base: pocket base:") for t in texts)
    assert builds == 1, texts
    cache = root / "cache" / "pocket-base"
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [Path(base_a).name]
    assert not [p for p in cache.iterdir() if ".work-" in p.name]  # no half-built copy left behind
    completed = (Path(base_a) / ".complete").read_text()
    started = [store.manifest(run_id, "base")["started_at"] for run_id in (id_a, id_b)]
    assert max(started) < completed, "the second run's base stage should have begun while the build ran"
