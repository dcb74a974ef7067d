"""Reading the pocket world's responses: what a written check did (caught a slip, broke right work,
...) and where written work went wrong (the chain's copy, the reductions, where a check starts). The
benches and the ablation lab analyse samples with these; no base is built from them (they are not in
pretrain.py's import closure, so editing them leaves every base's key alone)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pocket import world
from rewards.verdict import judge_completion

OUTCOMES = {(True, True): "confirmed", (False, True): "caught", (False, False): "missed", (True, False): "broke"}


def check_outcome(text: str, answer: str) -> str | None:
    """What a response's written check ("check :") did: None when it has none; else, by whether the
    work before the check ended on the right value and whether the answer given is right,
    "confirmed" (right, right), "caught" (wrong, right), "missed" (wrong, wrong) or "broke" (right, wrong).
    It reads the text as world.caught_slip does."""
    if world.CHECK_WORD not in text:
        return None
    worked = re.findall(r"-?\d+", text.split(world.CHECK_WORD, 1)[0].split("<think>")[-1])
    given = re.findall(r"<answer>\s*(-?\d+)\s*</answer>", text)
    return OUTCOMES[(bool(worked) and worked[-1] == answer.strip(), bool(given) and given[-1] == answer.strip())]


# The forward work's lines in every language of the world ("i start from 4 - 1 ." / "then 3 .").
_WORK_LINE = re.compile("(?:" + "|".join(re.escape(p[w]) for p in world.PHRASES.values() for w in ("start", "then"))
                        + r") (-?\d[-+ \d]*?) \.")
ANATOMY = ("responses", "written", "copied", "clean", "clean_right", "checked", "check_from_prompt", "check_from_work",
           "check_from_other")


def _terms(text: str) -> list[int] | None:
    try:
        return world.parse_terms(text)
    except (ValueError, IndexError):
        return None


def work_anatomy(text: str, chain: list[int]) -> dict[str, Any] | None:
    """Where a response's written work went: None when it wrote none; else whether its first line
    copied the prompt's chain ("copied"), whether every later line then reduced the one before it
    ("reduced": first two terms added, the rest copied), and where its check started ("check_from":
    "prompt" when it copied the prompt's chain again, "work" when it copied the work's first line
    instead, "other", or None without a check)."""
    work, _, check = text.split("<think>")[-1].partition(world.CHECK_WORD)
    lines = [_terms(m) for m in _WORK_LINE.findall(work)]
    if not lines:
        return None
    copied = lines[0] == list(chain)
    reduced = all(a and b and len(b) == len(a) - 1 and b[0] == a[0] + a[1] and b[1:] == a[2:]
                  for a, b in zip(lines, lines[1:], strict=False))
    check_from = None
    if check:
        first = _terms(re.split(r" = | \. ", check.strip())[0])  # the chain it starts from
        check_from = "prompt" if first == list(chain) else "work" if first == lines[0] else "other"
    return {"copied": copied, "reduced": reduced, "check_from": check_from}


def tally_anatomy(rows: list[dict[str, Any]], sampled: list[list[Any]], language: str) -> dict[str, int]:
    """work_anatomy counted over samples (k per row): how many wrote work, copied the chain, copied it
    and reduced every line right ("clean"; "clean_right": of those, answered right), checked, and where
    the checks started."""
    counts = Counter({key: 0 for key in ANATOMY})
    for row, completions in zip(rows, sampled, strict=True):
        chain = world.terms_of(row["metadata"])
        for c in completions:
            counts["responses"] += 1
            a = work_anatomy(c.text, chain) if chain else None
            if a is None:
                continue
            clean = a["copied"] and a["reduced"]
            right = judge_completion(c, row, language).correct
            counts.update({"written": 1, "copied": a["copied"], "clean": clean, "clean_right": clean and right,
                           "checked": a["check_from"] is not None})
            if a["check_from"]:
                counts[f"check_from_{a['check_from']}"] += 1
    return dict(counts)
