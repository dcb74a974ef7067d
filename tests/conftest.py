"""Shared fixtures: the test-size pocket base and the r1-pipeline training chain, each built once per
session, and one temporary Prefect server (prefect_test_harness) for every in-process flow.

Run ids: `pocket_run`'s holds only the task data and the base, which every module may read; a module
that builds stages of its own does so in a run id of its own, seeded with those references. The
training chain (`trained_run`) is one run id that the side flows (`side_flows`) join, as a user joins
an r1-pipeline run to distil from it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

# Forced, not defaulted: a user's WANDB_MODE=online (or a hub token) must not reach the suite.
SUITE_ENV = {
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
os.environ.update(SUITE_ENV)

ROOT = Path(__file__).resolve().parent.parent
TEST_RECIPE = ROOT / "configs" / "pocket-test.yaml"
# What a copy of the project needs to run `python -m shell.cli` (tests that edit or kill a copy):
# the installed packages and the recipes.
SOURCES = (*tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"], "configs")


# A test that needs any of these trains a model (the pocket base at least): it is marked slow, so
# `pytest -m "not slow"` is the quick suite. Derived from the fixtures, so a new test cannot forget.
TRAINING_FIXTURES = {"pocket_run", "own_run", "trained_run", "side_flows"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def test_recipe():
    from core.config import load_recipe

    return load_recipe(TEST_RECIPE)


@pytest.fixture(scope="session")
def pocket_run(tmp_path_factory, test_recipe):
    """(store, run_id, task_data_ref, base_ref) for the test-size pocket recipe."""
    from core.runstore import RunStore
    from stages import graph, runner

    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.new_run_id(test_recipe.name)
    refs = runner.build([graph.BASE], test_recipe, store, run_id)
    return store, run_id, refs[graph.TASK_DATA], refs[graph.BASE]


@pytest.fixture(scope="session")
def own_run(pocket_run):
    """own_run(name) -> (store, run_id, refs): a new run id in the session store for a module that
    builds stages, seeded with the shared task data and base."""
    store, _, task_data_ref, base_ref = pocket_run

    def make(name: str) -> tuple:
        return store, store.new_run_id(name), {"task_data": task_data_ref, "base": base_ref}

    return make


@pytest.fixture(scope="session")
def trained_run(own_run, test_recipe):
    """(store, run_id, refs) for the r1-pipeline chain at test size in its own run id, built once for
    the session: cold start -> RL -> dataset -> SFT -> reward model -> all-scenario RL, with the base
    and the final adapter evaluated. For tests that read what the stages made."""
    from stages import runner

    store, run_id, _ = own_run("chain")
    # its own task data and base stages (the base from the shared cache): a flow that joins this run
    # id finds every stage it needs here, built from this run's own inputs, and reuses it
    refs = runner.build(["all_scenario_rl", "eval_base", "eval_all_scenario_rl"], test_recipe, store, run_id)
    return store, run_id, refs


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server and database for every flow the suite runs in-process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def side_flows(trained_run, prefect_harness):
    """The r1-zero, distill and evaluate flows, run once each through Prefect on the training chain's
    run id (they reuse its finished stages and build their own): flow name -> what the flow returned."""
    store, run_id, _ = trained_run
    from flows.evaluate import evaluate
    from flows.training import distill, r1_zero

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R1_RUNS_DIR", str(store.root))
        return {
            "r1-zero": r1_zero(recipe="pocket-test", run_id=run_id),
            "distill": distill(recipe="pocket-test", run_id=run_id),
            "evaluate": evaluate(recipe="pocket-test", run_id=run_id, stages=["sft"]),
        }
