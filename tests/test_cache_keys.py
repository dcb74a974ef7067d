"""Cache keys: a stage's key covers its own recipe section, every model setting it uses and the code
it runs (its module and everything that imports, transitively), so changing any of them rebuilds it
and, through its new output, everything downstream; the shell, the flows and every module a stage
does not import are in no key. The stage reads nothing of the recipe
that its declaration (stages/graph.py) leaves out of its key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.config import load_recipe
from core.runstore import PROJECT_ROOT, Ref, RunStore
from core.stage import StageCall, UndeclaredSettingError, code_files
from stages import graph

TEST_RECIPE = PROJECT_ROOT / "configs" / "pocket-test.yaml"
EVALUATED = ("base", "cold_start", "reasoning_rl", "sft", "all_scenario_rl", "r1_zero", "student_base",
             "student_distilled", "student_rl")
ALL = {s.name for s in graph.STAGES} | {f"eval_{s}" for s in EVALUATED}


def keys(overrides: list[str] = (), root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Every stage's key and every evaluation's, in graph order. A stage whose key changes is rebuilt
    and writes new outputs, so each input here stands for its producer by carrying the producer's key
    as its content hash."""
    recipe = load_recipe(TEST_RECIPE, list(overrides))
    store = RunStore(root / "unused-runs")
    refs: dict[str, Ref] = {}
    out = {}
    for spec in [*graph.STAGES, *(graph.evaluation_of(name) for name in EVALUATED)]:
        call = StageCall(spec, recipe, store, "run", {name: refs[src] for name, src in spec.inputs_for(recipe).items()})
        out[spec.name] = call.key(root=root)
        refs[spec.name] = Ref("run", spec.name, "/nowhere", out[spec.name], out[spec.name][:12])
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys() == ALL
    return {name for name in before if before[name] != after[name]}


# Stages whose own training or sampling loads the model with model.dtype / builds the LoRA adapter.
DTYPE_USERS = {"cold_start_data", "cold_start", "reasoning_rl", "rejection_sampling", "sft", "all_scenario_rl", "merged", "r1_zero",
               "student_distilled", "student_rl"} | {f"eval_{s}" for s in EVALUATED}
LORA_USERS = {"cold_start_data", "cold_start", "reasoning_rl", "rejection_sampling", "sft", "reward_model", "all_scenario_rl", "r1_zero",
              "student_distilled", "student_rl"}
DOWNSTREAM_OF_COLD_START = {"cold_start", "reasoning_rl", "rejection_sampling", "sft", "all_scenario_rl", "merged",
                            "student_distilled", "eval_cold_start", "eval_reasoning_rl", "eval_sft",
                            "eval_all_scenario_rl", "eval_student_distilled"}


@pytest.fixture(scope="module")
def default_keys() -> dict[str, str]:
    return keys()


def test_model_dtype_is_in_the_key_of_every_stage_that_loads_with_it(default_keys):
    assert changed(default_keys, keys(["model.dtype=bfloat16"])) == DTYPE_USERS


def test_lora_rank_is_in_the_key_of_every_stage_that_trains_an_adapter_and_downstream(default_keys):
    downstream = {"merged"} | {f"eval_{s}" for s in EVALUATED if s not in ("base", "student_base")}
    assert changed(default_keys, keys(["model.lora.r=4"])) == LORA_USERS | downstream


@pytest.mark.parametrize("override, expected", [
    ("cold_start.learning_rate=1e-3", DOWNSTREAM_OF_COLD_START),
    ("cold_start.examples=10", {"cold_start_data"} | DOWNSTREAM_OF_COLD_START),
    ("cold_start.collect.temperature=0.9", {"cold_start_data"} | DOWNSTREAM_OF_COLD_START),
    ("r1_zero.steps=2", {"r1_zero", "eval_r1_zero"}),  # the generated cold start does not read it
    ("cold_start.source=r1_zero", {"cold_start_data"} | DOWNSTREAM_OF_COLD_START),
    ("sft.steps=7", {"sft", "all_scenario_rl", "merged", "eval_sft", "eval_all_scenario_rl"}),
    ("reward_model.steps=7", {"reward_model", "all_scenario_rl", "merged", "eval_all_scenario_rl"}),
    ("distill.rl.steps=2", {"student_rl", "eval_student_rl"}),
    ("eval.samples=2", {f"eval_{s}" for s in EVALUATED}),
    ("model.pocket.steps=151", ALL - {"task_data", "student_base", "eval_student_base", "student_rl",
                                      "eval_student_rl"}),
])
def test_a_stage_setting_changes_that_stage_and_what_is_built_from_it(default_keys, override, expected):
    assert changed(default_keys, keys([override])) == expected


def test_a_setting_no_stage_reads_changes_nothing(default_keys):
    assert changed(default_keys, keys(["name=renamed"])) == set()


@pytest.fixture
def source_copy(tmp_path) -> Path:
    """The project's packages copied to a directory whose files a test may edit."""
    for pkg in ("core", "data", "rewards", "pocket", "stages", "flows", "shell"):
        shutil.copytree(PROJECT_ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_editing_the_shell_or_the_flows_changes_no_stage_key(default_keys, source_copy):
    assert keys(root=source_copy) == default_keys
    for module in ("shell/cli.py", "shell/doctor.py", "shell/plan.py", "shell/prefect_server.py",
                   "flows/prefect_tasks.py", "flows/report.py", "flows/training.py", "stages/graph.py",
                   "stages/preflight.py"):
        _edit(source_copy / module)
    assert keys(root=source_copy) == default_keys


def test_editing_a_stage_module_changes_its_stages_and_what_is_built_from_them(default_keys, source_copy):
    _edit(source_copy / "stages" / "sft.py")  # the cold start, stage 3b and distillation
    assert changed(default_keys, keys(root=source_copy)) == DOWNSTREAM_OF_COLD_START


def test_editing_a_module_a_stage_does_not_import_leaves_its_key(default_keys, source_copy):
    """The code sandbox is imported by the GRPO stages (through the reward catalog), not by SFT, the
    data or the base: an edit there retrains R1-Zero and the RL stages, nothing upstream of them."""
    _edit(source_copy / "rewards" / "code.py")
    after = changed(default_keys, keys(root=source_copy))
    assert {"r1_zero", "reasoning_rl", "all_scenario_rl", "student_rl"} <= after
    assert not after & {"task_data", "base", "cold_start_data", "cold_start", "reward_model", "student_base",
                        "eval_base", "eval_cold_start"}


def test_code_of_a_stage_is_its_import_closure():
    files = code_files(graph.BY_NAME["all_scenario_rl"].run)
    assert {"stages/grpo.py", "stages/reward_model.py", "core/trainers.py", "data/chat.py",
            "rewards/routing.py", "rewards/code.py"} <= set(files)
    assert not [f for f in files if f.startswith(("shell/", "flows/", "bench/"))]
    assert "stages/sft.py" not in files and "stages/graph.py" not in files
    assert "rewards/code.py" not in code_files(graph.BY_NAME["sft"].run)


def test_the_pocket_base_key_follows_the_code_that_builds_it(test_recipe, source_copy):
    """The base's content key covers pretrain.py's import closure: the corpus writer, the tokenizer,
    the world; not the evaluation, the preference pairs or the report of the same package."""
    import pocket

    cfg, template = test_recipe.model.pocket, test_recipe.data.template
    key = lambda root: pocket.base_key(cfg, template, ["1 + 2 ="], root=root)  # noqa: E731
    assert key(source_copy) == pocket.base_key(cfg, template, ["1 + 2 ="])
    for untouched in ("pocket/report.py", "pocket/preferences.py", "rewards/verdict.py", "core/trainers.py"):
        _edit(source_copy / untouched)
    assert key(source_copy) == pocket.base_key(cfg, template, ["1 + 2 ="])
    _edit(source_copy / "pocket" / "world.py")
    assert key(source_copy) != pocket.base_key(cfg, template, ["1 + 2 ="])
    assert pocket.base_key(cfg, template, ["1 + 3 ="]) != pocket.base_key(cfg, template, ["1 + 2 ="])


def test_a_stage_cannot_read_a_setting_it_does_not_declare(tmp_path):
    recipe = load_recipe(TEST_RECIPE)
    call = StageCall(graph.BY_NAME["sft"], recipe, RunStore(tmp_path), "run")
    assert call.cfg == recipe.sft and call.recipe.model.lora == recipe.model.lora and call.recipe.seed == 0
    with pytest.raises(UndeclaredSettingError, match="stage 'sft' reads recipe setting 'cold_start'"):
        call.recipe.cold_start  # noqa: B018
    with pytest.raises(UndeclaredSettingError, match="'model.pocket'"):
        call.recipe.model.pocket  # noqa: B018


def test_the_run_store_rebuilds_a_stage_when_a_setting_it_uses_changes_and_reuses_it_otherwise(own_run):
    """Through the run store, not just the key: the merged model (it reads model.dtype) on a fresh
    adapter is built, reused when a setting it does not read changes, and rebuilt in the new dtype
    when model.dtype changes; the task data likewise for a data setting."""
    import json

    from core.modeling import trainable_model
    from stages.evaluation import import_adapter

    store, run_id, refs = own_run("cache-keys")
    recipe = load_recipe(TEST_RECIPE)
    adapter_dir = store.root / "a-fresh-adapter"
    trainable_model(refs["base"].path, None, recipe.model.lora).save_pretrained(adapter_dir)
    inputs = {"base": refs["base"], "adapter": import_adapter(store, run_id, str(adapter_dir))}

    def merged(*overrides: str):
        spec = graph.BY_NAME["merged"]
        outcome = spec.run(StageCall(spec, load_recipe(TEST_RECIPE, list(overrides)), store, run_id, inputs))
        saved = json.loads((Path(outcome.ref.path) / "model" / "config.json").read_text())
        return outcome, saved.get("dtype") or saved.get("torch_dtype")

    first, dtype = merged()
    assert not first.reused and dtype == "float32"
    again, _ = merged("cold_start.steps=7", "name=renamed", "eval.samples=2")
    assert again.reused and again.ref == first.ref
    rebuilt, dtype = merged("model.dtype=bfloat16")
    assert not rebuilt.reused and dtype == "bfloat16" and rebuilt.ref.sha256 != first.ref.sha256

    spec = graph.BY_NAME["task_data"]
    data = [spec.run(StageCall(spec, load_recipe(TEST_RECIPE, list(o)), store, run_id))
            for o in ([], ["model.dtype=bfloat16"], ["data.test_size=20"])]
    assert [o.reused for o in data] == [False, True, False]
