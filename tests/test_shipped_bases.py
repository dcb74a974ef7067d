"""The shipped pocket bases (pocket/bases/, `make base`) match the code: each one's recorded key is
the key this code gives its configuration, so a shipped base is found and used exactly when it is
what the code would build. A stale one (corpus code or settings changed) fails here, not silently."""

from __future__ import annotations

import json

import pytest

import pocket
from shell import bases


@pytest.mark.parametrize("shipped", bases.SHIPPED, ids=lambda s: s.name)
def test_every_shipped_base_is_present_and_matches_the_code(shipped, tmp_path):
    from core.runstore import RunStore

    record = pocket.SHIPPED / shipped.name / pocket.SHIPPED_RECORD
    assert record.is_file(), f"pocket/bases/{shipped.name} is missing: run `make base`"
    recorded = json.loads(record.read_text())
    expected = bases.expected_key(shipped, RunStore(tmp_path))
    assert recorded["key"] == expected, (
        f"pocket/bases/{shipped.name} was built under key {recorded['key']}, but the code now gives {expected} "
        "(the corpus, tokenizer, pretraining code or the recipe changed): run `make base` and commit pocket/bases/")
    assert pocket.shipped_base(expected) == record.parent
    assert (record.parent / "model.safetensors").is_file() and (record.parent / "tokenizer.json").is_file()


def test_a_changed_setting_finds_no_shipped_base(tmp_path):
    from core.runstore import RunStore

    teacher = bases.SHIPPED[0]
    changed = bases.Shipped(teacher.name, teacher.recipe, teacher.stage, (*teacher.overrides, "model.pocket.steps=1799"))
    assert pocket.shipped_base(bases.expected_key(changed, RunStore(tmp_path))) is None
