"""Preference pairs for the reward model from the recipe's preference dataset (`reward_model.dataset`,
a file or a hub dataset with a column mapping), in TRL's explicit-prompt conversational format:
{"prompt": [user message], "chosen": [assistant message], "rejected": [assistant message]} plus the
spoil `kind` (None here; the pocket world's generated pairs name theirs: pocket/preferences.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import PreferenceColumns, PreferenceSource
from data.sources import DataError
from rewards.completions import prompt_key


def _turns(value: Any, role: str, where: str) -> list[dict[str, str]]:
    """A column's value as chat messages: plain text becomes one `role` message."""
    if isinstance(value, str) and value.strip():
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                 for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DataError(f"{where}: expected text or a list of {{role, content}} messages, got {value!r:.80}")


def normalize_pair(record: dict[str, Any], columns: PreferenceColumns, where: str) -> dict[str, Any]:
    """One dataset row as a pair in the format of `preference_pair` (explicit prompt, no spoil kind):
    with a prompt column its value is the prompt; without one the shared opening of chosen and
    rejected is (TRL's extract_prompt)."""
    wanted = [c for c in (columns.prompt, columns.chosen, columns.rejected) if c]
    missing = [c for c in wanted if c not in record]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; the row has {sorted(record)} (set "
                        f"reward_model.dataset.columns)")
    chosen = _turns(record[columns.chosen], "assistant", f"{where}: column '{columns.chosen}'")
    rejected = _turns(record[columns.rejected], "assistant", f"{where}: column '{columns.rejected}'")
    if columns.prompt:
        prompt = _turns(record[columns.prompt], "user", f"{where}: column '{columns.prompt}'")
    else:
        from trl.data_utils import extract_prompt  # TRL's own rule for implicit prompts; heavy to import

        pair = extract_prompt({"chosen": chosen, "rejected": rejected})
        prompt, chosen, rejected = pair["prompt"], pair["chosen"], pair["rejected"]
    if not prompt or not chosen or not rejected:
        raise DataError(f"{where}: chosen and rejected share no prompt, or one of them is only the prompt")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": None}


def dataset_pairs(src: PreferenceSource, n_train: int, n_heldout: int, seed: int
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out) pairs from the recipe's preference dataset, shuffled by `seed`; no held-out
    prompt appears in training."""
    import datasets  # seconds to import: only when a reward model trains on a dataset

    if src.kind == "file":
        if not Path(src.path).is_file():
            raise DataError(f"reward_model.dataset.path {src.path}: file not found")
        loader = "parquet" if src.path.lower().endswith(".parquet") else "json"
        ds = datasets.load_dataset(loader, data_files=src.path, split="train")
        where = src.path
    else:
        ds = datasets.load_dataset(src.name, src.subset, split=src.split)
        where = f"hub dataset {src.name}"
    ds = ds.shuffle(seed=seed).select(range(min(len(ds), n_train + n_heldout)))
    pairs = [normalize_pair(r, src.columns, f"{where} row {i}") for i, r in enumerate(ds)]
    heldout = pairs[:n_heldout]
    seen = {prompt_key(p["prompt"][-1]["content"]) for p in heldout}
    train = [p for p in pairs[n_heldout:] if prompt_key(p["prompt"][-1]["content"]) not in seen]
    return train, heldout


def pair_prompts(pairs: list[dict[str, Any]]) -> list[str]:
    """The last user turn of each pair's prompt: general prompts for all-scenario RL."""
    return [p["prompt"][-1]["content"] for p in pairs]
