"""The real-model recipes (configs/qwen*.yaml) run their whole stage graph here, at test size.

Only three kinds of override separate this from the recipe a GPU user runs: the model (and the
distillation student) is a test-size pocket base with room for the recipe's R1 system prompt; each
hub dataset is a local file with the same columns and answer format (chain sums written the way
GSM8K or MATH write answers: `#### 7`, `\\boxed{7}`); and sizes, steps and the GPU-only switches
(bf16, vLLM) are shrunk or turned off. Everything else is the recipe's own: its template, rewards,
loss, KL coefficient, guard, gradient checkpointing. One exception: the cold start reads a file of
worked examples instead of R1-Zero's samples (the recipes' `r1_zero` source), because a two-step
R1-Zero of a test-size base, prompted in the recipe's R1 system prompt, writes no verified answer to
keep (measured: 54 wrong, 41 overlong of 96); the r1_zero source itself runs in the pocket recipe's
tests. R1-Zero still trains and is evaluated here. Before
the sealed-test round every evaluation stage of these recipes crashed after sampling (an empty
stress split was saved and read back); nothing else in the suite ran them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import reasoning_gym
from pydantic import BaseModel

from core.config import GRPOStageConfig, SamplingConfig, TrainConfig, load_recipe
from data.saved import has_split
from stages import graph, runner
from stages.evaluation import load_results, stage_name

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "configs").glob("qwen*.yaml"))

# what a training section is shrunk to (a key the section lacks is skipped)
TRAIN = {"steps": 2, "batch_size": 4, "gradient_accumulation_steps": 1, "save_steps": 1, "warmup_steps": 0,
         "bf16": False}
GRPO = {"num_generations": 4, "max_completion_length": 48, "use_vllm": False}
SAMPLING = {"prompts": 24, "samples_per_prompt": 4, "max_new_tokens": 48, "max_tokens": 64, "batch_size": 96,
            "use_vllm": False}


def _fields(section: BaseModel, values: dict[str, Any], prefix: str) -> list[str]:
    return [f"{prefix}.{k}={json.dumps(v)}" for k, v in values.items() if k in type(section).model_fields]


def shrink(recipe: Any) -> list[str]:
    """Overrides that shrink every section of `recipe` to test size, found by walking it."""
    out = []
    sections = {name: getattr(recipe, name) for name in type(recipe).model_fields}
    sections |= {"distill.sft": recipe.distill.sft, "distill.rl": recipe.distill.rl,
                 "cold_start.collect": recipe.cold_start.collect}
    for name, section in sections.items():
        if isinstance(section, TrainConfig):
            out += _fields(section, TRAIN, name)
        if isinstance(section, GRPOStageConfig):
            out += _fields(section, GRPO, name)
            if section.guard is not None:
                out += [f"{name}.guard.every=1", f"{name}.guard.prompts=8"]
        if isinstance(section, SamplingConfig):
            out += _fields(section, SAMPLING, name)
    return out + [
        "data.test_size=16", "cold_start.examples=32", "reward_model.pairs=48", "reward_model.heldout_pairs=8",
        "eval.samples=2", "eval.prompts=8", "eval.max_new_tokens=48", "model.dtype=float32"]


def _standins(tmp: Path, recipe: Any) -> list[str]:
    """Each hub source replaced by a local file with its columns and answer format; the reward
    model's preference set by whole conversations (the implicit-prompt format the recipe names)."""
    out = []
    items = list(reasoning_gym.create_dataset("chain_sum", size=160, seed=3, min_terms=2, max_terms=4,
                                              min_digits=1, max_digits=1))
    sources = []
    for i, src in enumerate(recipe.data.sources):
        assert src.kind == "hub", "a real recipe's task data comes from the hub"
        write = {"gsm8k": lambda a: f"{a}\n#### {a}", "boxed": lambda a: f"So it is $\\boxed{{{a}}}$."}[src.answer_format]
        path = tmp / f"source{i}.jsonl"
        path.write_text("".join(json.dumps({src.columns.prompt: it["question"], src.columns.answer: write(it["answer"])})
                                + "\n" for it in items))
        sources.append({"kind": "file", "path": str(path), "task": src.task, "answer_format": src.answer_format,
                        "columns": src.columns.model_dump()})
    out.append(f"data.sources={json.dumps(sources)}")
    pairs = tmp / "preferences.jsonl"
    assert recipe.reward_model.dataset.columns.prompt is None
    pairs.write_text("".join(json.dumps({
        "chosen": [{"role": "user", "content": f"Say something kind to friend {i}."},
                   {"role": "assistant", "content": f"You are a good friend, {i}, and I am glad we met."}],
        "rejected": [{"role": "user", "content": f"Say something kind to friend {i}."},
                     {"role": "assistant", "content": "no"}]}) + "\n" for i in range(80)))
    cold = tmp / "cold_start.jsonl"
    cold.write_text("".join(json.dumps({"prompt": it["question"], "completion": (
        f"<think> {it['metadata']['expression']} is {it['answer']} . </think> <answer> {it['answer']} </answer>")})
        + "\n" for it in items[:48]))
    out += ["cold_start.source=file", f"cold_start.dataset={cold}"]
    out.append(f"reward_model.dataset={json.dumps({'kind': 'file', 'path': str(pairs), 'columns': {'prompt': None}})}")
    return out


@pytest.fixture(scope="module")
def long_base(own_run, test_recipe):
    """The test-size pocket base with a context long enough for the R1 system prompt (~400 tokens
    with its tokenizer) plus the recipes' longest generations."""
    store, run_id, refs = own_run("long-context-base")
    recipe = load_recipe(ROOT / "configs" / "pocket-test.yaml", ["model.pocket.max_position_embeddings=2048"])
    built = runner.build([graph.BASE], recipe, store, run_id, {graph.TASK_DATA: refs[graph.TASK_DATA]})
    return built[graph.BASE].path


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_real_recipe_runs_its_whole_graph_at_test_size(path, long_base, own_run, tmp_path):
    store, run_id, _ = own_run(path.stem)
    loaded = load_recipe(path)
    overrides = [f"model.base={long_base}", f"distill.student_model={long_base}", *_standins(tmp_path, loaded)]
    recipe = load_recipe(path, overrides + shrink(load_recipe(path, overrides)))
    assert recipe.data.transfer == [] and recipe.data.longer == []  # no stress split: the case that crashed
    targets = [t for flow in graph.FLOWS.values() for t in flow.targets]
    evaluations = [stage_name(s) for flow in graph.FLOWS.values() for s in graph.flow_evaluations(flow, recipe)]
    refs = runner.build([*targets, *evaluations], recipe, store, run_id)

    assert {"r1_zero", "cold_start_data", "reasoning_rl", "rejection_sampling", "all_scenario_rl", "merged",
            "student_distilled", "student_rl"} <= set(refs)
    assert store.manifest(run_id, "cold_start_data")["metrics"]["source"] == "file"
    assert not has_split(refs[graph.TASK_DATA], "transfer") and not has_split(refs[graph.TASK_DATA], "longer")
    for name in evaluations:
        results = load_results(refs[name])
        assert set(results) >= {"overall"} and "transfer" not in results and "longer" not in results
        assert 0 <= results["overall"]["pass_at_1"] <= 1
    assert store.manifest(run_id, "all_scenario_rl")["metrics"]["guard_split"] == "validation"
