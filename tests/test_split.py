"""The test / validation / train split: deterministic for a seed, disjoint, duplicates folded; a
validation split is carved when the recipe sizes none; a seed draws its own world."""

import pytest

from data.seeds import world_seed
from data.sources import DataError
from data.split import split
from rewards.completions import prompt_key


def rows(n, dup_every=0):
    out = []
    for i in range(n):
        k = i - 1 if dup_every and i % dup_every == 0 and i else i
        out.append({"prompt": f"what is {k} + 1 ?", "answer": str(k + 1), "task": "t", "metadata": "{}"})
    return out


def test_same_seed_same_rows():
    assert split(rows(100), 10, 10, seed=3) == split(rows(100), 10, 10, seed=3)


def test_other_seed_other_test_split():
    assert split(rows(100), 10, 10, seed=3)[2] != split(rows(100), 10, 10, seed=4)[2]


def test_the_three_splits_are_disjoint_even_with_duplicates():
    data = rows(200, dup_every=3)
    # a case- and space-variant duplicate must not leak either
    data.append({**data[5], "prompt": "  WHAT is 5 +   1 ?"})
    train, validation, test = split(data, 30, 20, seed=0)
    assert (len(test), len(validation)) == (30, 20)
    keys = [{prompt_key(r["prompt"]) for r in part} for part in (train, validation, test)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert sum(map(len, keys)) == len({prompt_key(r["prompt"]) for r in data})


def test_without_a_validation_size_a_tenth_is_carved_from_the_pool():
    train, validation, test = split(rows(100), 10, None, seed=0)
    assert (len(train), len(validation), len(test)) == (80, 10, 10)
    assert len(split(rows(5000), 10, None, seed=0)[1]) == 200  # at most 200


def test_too_few_prompts_is_a_clear_error():
    with pytest.raises(DataError, match="data.test_size 5 \\+ data.validation_size 1 leave none to train on"):
        split(rows(6), 5, 1, seed=0)


def test_world_seeds_never_share_a_draw():
    """reasoning-gym draws item j of a dataset seeded s from Random(s + j): each (seed, stream) gets a
    block of a million seeds, so seeds 0, 1, 2 and the corpus's streams share no item."""
    starts = sorted(world_seed(seed, stream) for seed in range(3) for stream in (0, 1, 100, 200, 500, 501))
    assert all(b - a >= 1_000_000 for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="stream"):
        world_seed(0, 1000)
