"""No chain of a held-out prompt (validation, test, transfer, longer) occurs in anything a model trains
on: the real recipe's pretraining corpus (configs/pocket.yaml: as a task document or under any
practice prompt), the RL prompt sets, the cold-start and rejection-sampled sets. Each check is also
run where the exclusion is switched off (or on data that breaks it), to see it fail."""

from __future__ import annotations

import pytest

import pocket
from core.config import load_recipe
from core.runstore import RunStore
from core.stage import setting
from data.saved import STRESS, load_sft_dataset, load_split
from pocket import world
from pocket.corpus import corpus
from stages import graph, grpo, runner
from stages.base import held_out_prompts

HELD = ("validation", "test", *STRESS)


def chains(prompts) -> set[str]:
    """The chains these prompts ask (task or practice prompt alike), written as they are ("6 - 2 + 0"
    and "6 - 2 - 0" are different prompts; the corpus leaves out both when either is held out)."""
    return {" ".join(c.split()) for p in prompts if world.chain_of(p) is not None
            for c in [p.rsplit(":", 1)[-1].strip().rstrip("=").strip()]}


def doc_chains(docs) -> set[tuple[int, ...]]:
    return chains(conv[-1]["content"] for conv, _ in docs)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real recipe's task data for seed 0 (sources and splits only: nothing trains) and its
    pocket section with the seed resolved, as the base stage resolves it."""
    recipe = load_recipe("configs/pocket.yaml")
    store = RunStore(tmp_path_factory.mktemp("runs"))
    task_data = runner.build([graph.TASK_DATA], recipe, store, "exclusions")[graph.TASK_DATA]
    held = {split: chains(load_split(task_data, split)["prompt"]) for split in HELD}
    return recipe, task_data, held, recipe.model.pocket.model_copy(update={"seed": recipe.seed})


def test_the_splits_hold_what_the_recipe_says(real):
    recipe, task_data, held, _ = real
    sizes = {split: len(load_split(task_data, split)) for split in ("train", *HELD)}
    assert sizes["test"] == recipe.data.test_size and sizes["validation"] == recipe.data.validation_size
    terms = {split: {len(world.parse_terms(c)) for c in held[split]} for split in STRESS}
    assert terms == {"transfer": {6, 7}, "longer": {8}}
    train = chains(load_split(task_data, "train")["prompt"])
    assert max(len(world.parse_terms(c)) for c in train) <= recipe.model.pocket.max_terms


def test_the_real_corpus_holds_no_held_out_chain_and_would_without_the_exclusion(real):
    recipe, task_data, held, cfg = real
    found = doc_chains(corpus(cfg, recipe.data.template, pocket.held_chains(held_out_prompts(task_data))))
    assert not found & set().union(*held.values())
    # switched off, the corpus's own draws meet the validation and test splits (short chains repeat)
    unexcluded = doc_chains(corpus(cfg, recipe.data.template, set()))
    for split in ("validation", "test"):
        assert unexcluded & held[split], split
    # the longer split is longer than any document, by construction
    terms = lambda chain: len(world.parse_terms(chain))  # noqa: E731
    assert max(map(terms, unexcluded)) < min(map(terms, held["longer"]))
    # 6-7 term chains are too many to meet by chance: the exclusion is shown on one the corpus holds
    practised = sorted(c for c in unexcluded if terms(c) == 7)[0]
    assert practised not in doc_chains(corpus(cfg, recipe.data.template, {tuple(world.parse_terms(practised))}))


def test_every_rl_prompt_set_is_training_prompts_only(real):
    recipe, task_data, held, _ = real
    every_held = set().union(*held.values())
    for spec in (s for s in graph.STAGES if s.kind == "grpo"):
        data = grpo.training_prompts(setting(recipe, spec.section), recipe, task_data)
        assert not chains(data["question"]) & every_held, spec.name
    # the same check on a prompt set that mixes in the test split fails
    assert chains(load_split(task_data, "test")["prompt"]) & every_held


def test_the_sampled_training_sets_hold_no_held_out_chain(trained_run):
    """The cold-start and rejection-sampled sets of a trained chain (the test recipe) are drawn from
    training prompts only."""
    store, run_id, _ = trained_run
    task_data = store.ref(run_id, graph.TASK_DATA)
    every_held = set().union(*(chains(load_split(task_data, s)["prompt"]) for s in HELD))
    for stage in ("cold_start_data", "rejection_sampling"):
        rows = load_sft_dataset(store.ref(run_id, stage))
        prompts = [r["prompt"][-1]["content"] for r in rows]
        assert prompts and not chains(prompts) & every_held, stage
    assert chains(load_split(task_data, "validation")["prompt"]) & every_held  # the check can fail
