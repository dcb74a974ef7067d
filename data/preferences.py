"""Preference pairs for the reward model, built from the general tasks (data/general.py).

Every pair shares a prompt; `chosen` is the answer the paper's readability goals prefer: a short
English chain of thought in `<think>`, then the correct answer in `<answer>`. `rejected` is the
same answer spoiled in exactly one way, so the reward model learns each preference on its own:
  mixed    the chain of thought switches between English and French;
  rambling the chain of thought repeats filler ("hmm , let me think again .");
  wrong    tidy, but the answer is wrong.
Pairs use TRL's explicit-prompt conversational format: {"prompt": [user message],
"chosen": [assistant message], "rejected": [assistant message]} plus the spoil `kind`.

Real recipes name a preference dataset instead (`reward_model.dataset`, a file or a hub dataset with
a column mapping); its rows are brought to the same format, `kind` None.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from core.config import PreferenceColumns, PreferenceSource
from data.general import ANIMALS, COLOURS
from data.sources import DataError, TaskRow
from rewards.completions import prompt_key

KINDS = ("mixed", "rambling", "wrong")
FILLER = "hmm , let me think again ."
# (English, French) first sentence of the chain of thought per task kind.
OPENINGS = {
    "upper": ("i write each word in capitals .", "je mets chaque mot en majuscules ."),
    "reverse": ("i read the words from the end .", "je lis les mots depuis la fin ."),
    "count": ("i count the letters of {word} one by one .", "je compte les lettres de {word} une par une ."),
    "first": ("i look at the start of {word} .", "je regarde le début de {word} ."),
    "colour": ("i recall the house in {town} .", "je me rappelle la maison de {town} ."),
    "animal": ("i recall the animal that lives in {town} .", "je me rappelle la bête de {town} ."),
}
CONCLUSIONS = ("so the answer is {answer} .", "donc la réponse est {answer} .")


def wrong_answer(row: TaskRow, rng: random.Random) -> str:
    """A plausible but wrong answer to a general task."""
    meta = json.loads(row["metadata"])
    kind, answer = meta["kind"], row["answer"]
    if kind == "upper":
        return meta["text"]  # not rewritten at all
    if kind == "reverse":
        words = meta["text"].split()
        return " ".join(words[1:] + words[:1]) if len(words) > 2 and rng.random() < 0.5 else meta["text"]
    if kind == "count":
        return str(max(1, int(answer) + rng.choice([-2, -1, 1, 2])))
    if kind == "first":
        word = meta["word"]
        return rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[0]])
    pool = COLOURS if kind == "colour" else ANIMALS
    return rng.choice([x for x in pool if x != answer])


def response(row: TaskRow, answer: str, think_langs: tuple[str, str] = ("en", "en"), filler: int = 0) -> str:
    """An assistant reply: opening and conclusion in the given languages, `filler` rambling sentences."""
    meta = json.loads(row["metadata"])
    lang_index = {"en": 0, "fr": 1}
    opening = OPENINGS[meta["kind"]][lang_index[think_langs[0]]].format(**meta)
    conclusion = CONCLUSIONS[lang_index[think_langs[1]]].format(answer=answer)
    middle = " ".join([FILLER, opening] * filler)
    think = " ".join(p for p in (opening, middle, conclusion) if p)
    return f"<think> {think} </think> <answer> {answer} </answer>"


def preference_pair(row: TaskRow, kind: str, rng: random.Random) -> dict[str, Any]:
    """One pair for `row`, its rejected reply spoiled as `kind` (one of KINDS)."""
    chosen = response(row, row["answer"])
    if kind == "mixed":
        rejected = response(row, row["answer"], ("fr", "en") if rng.random() < 0.5 else ("en", "fr"))
    elif kind == "rambling":
        rejected = response(row, row["answer"], filler=rng.randint(1, 3))
    elif kind == "wrong":
        rejected = response(row, wrong_answer(row, rng))
    else:
        raise ValueError(f"unknown spoil kind {kind!r}; expected one of {KINDS}")
    return {
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "kind": kind,
    }


def preference_pairs(rows: list[TaskRow], seed: int) -> list[dict[str, Any]]:
    """One pair per row, the spoil kinds in equal shares."""
    rng = random.Random(seed)
    return [preference_pair(row, KINDS[i % len(KINDS)], rng) for i, row in enumerate(rows)]


# --- preference pairs from a dataset (real recipes) ------------------------------------------------


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
