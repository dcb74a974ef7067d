"""The train / held-out split: deterministic for a seed, disjoint, duplicates folded."""

import pytest

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
    assert split(rows(100), 10, seed=3) == split(rows(100), 10, seed=3)


def test_other_seed_other_heldout():
    assert split(rows(100), 10, seed=3)[1] != split(rows(100), 10, seed=4)[1]


def test_heldout_and_train_are_disjoint_even_with_duplicates():
    data = rows(200, dup_every=3)
    # a case- and space-variant duplicate must not leak either
    data.append({**data[5], "prompt": "  WHAT is 5 +   1 ?"})
    train, heldout = split(data, 30, seed=0)
    assert len(heldout) == 30
    held = {prompt_key(r["prompt"]) for r in heldout}
    assert not held & {prompt_key(r["prompt"]) for r in train}
    assert len(train) + len(heldout) == len({prompt_key(r["prompt"]) for r in data})


def test_too_few_prompts_is_a_clear_error():
    with pytest.raises(DataError, match="heldout_size"):
        split(rows(5), 5, seed=0)
