"""What a finished lab variant measured, and the step-0 audit of a base.

A variant's figures come from its run: the R1-Zero evaluation (test pass@1 and pass@k from its k=16
samples, longer-split pass@1), TRL's per-step log (entropy, clip ratios, KL, rollout length and
accuracy) and the stage's rollouts.jsonl (every rollout: whether it writes its work out, checks it,
uses a reflection word, and how much longer wrong rollouts are than right ones of the same chain
length). "final" is the mean over the last quarter of the steps. The right samples per test prompt
(and, in the audit, the share of the base's samples with a check per prompt) are kept for the
intervals the arms report (lab/arms.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import fmean
from typing import Any

from core.generation import generate
from core.layout import LOG_HISTORY, ROLLOUTS
from core.modeling import adapter_path, inference_model, load_tokenizer
from core.runstore import Ref, RunStore
from core.stats import pass_at_k
from data.chat import messages, render
from data.saved import load_split
from pocket import world
from pocket.analysis import check_outcome
from rewards.verdict import judge, judge_completion
from stages.evaluation import eval_rows, load_results, load_samples, stage_name

PASS_KS = (1, 2, 4, 8, 16, 32, 64)


def pass_at_ks(right: list[int], n: int, ks: tuple[int, ...] = PASS_KS) -> dict[str, float]:
    """Mean pass@k over prompts, from each prompt's right samples out of `n`, for every k up to `n`."""
    return {str(k): fmean(pass_at_k(n, c, k) for c in right) for k in ks if k <= n}


def quarter(values: list[float]) -> float | None:
    """The mean of the last quarter of a per-step series (None entries skipped)."""
    tail = [v for v in values[-max(1, len(values) // 4):] if v is not None]
    return fmean(tail) if tail else None


def rollout_series(path: Path) -> dict[str, list[Any]]:
    """Per GRPO step, from the rollouts a stage saved: the shares that write their work out, check it
    (the world's written check) or use a reflection word, and the mean over chain lengths of wrong
    minus right rollout length (in tokens; None at a step without both at any length)."""
    steps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        steps[r["step"]].append(r)
    out: dict[str, list[Any]] = {"step": [], "written": [], "checked": [], "reflected": [], "length_gap": []}
    for step in sorted(steps):
        rows = steps[step]
        by_length: dict[int, dict[bool, list[int]]] = defaultdict(lambda: {True: [], False: []})
        written = checked = reflected = 0
        for r in rows:
            v = judge(r["completion"], r)
            written += v.wrote_work
            checked += world.has_check(r["completion"])
            reflected += v.reflected
            terms = world.terms_of(r["metadata"]) or []
            by_length[len(terms)][bool(v.correct)].append(r["tokens"])
        gaps = [fmean(t[False]) - fmean(t[True]) for t in by_length.values() if t[True] and t[False]]
        out["step"].append(step)
        out["written"].append(written / len(rows))
        out["checked"].append(checked / len(rows))
        out["reflected"].append(reflected / len(rows))
        out["length_gap"].append(fmean(gaps) if gaps else None)
    return out


LOGGED = {"entropy": "entropy", "clip_high": "clip_ratio/high_mean", "clip_low": "clip_ratio/low_mean", "kl": "kl",
          "length": "completions/mean_length", "accuracy": "rewards/accuracy/mean"}


def variant_measures(store: RunStore, run_id: str, recipe: Any, task_data: Ref) -> dict[str, Any]:
    """Everything a variant's run measured (module docstring); `task_data` is the seed's, which the
    variant's run was given rather than built."""
    stage = store.ref(run_id, "r1_zero")
    history = [h for h in json.loads((Path(stage.path) / LOG_HISTORY).read_text()) if "reward" in h]
    series: dict[str, list[Any]] = {"step": [h["step"] for h in history]}
    series |= {name: [h.get(key) for h in history] for name, key in LOGGED.items()}
    rollouts = rollout_series(Path(stage.path) / ROLLOUTS)
    evaluation = store.ref(run_id, stage_name("r1_zero"))
    results = load_results(evaluation)
    rows = eval_rows(recipe.eval, task_data)
    sampled = load_samples(evaluation, rows)
    right = [sum(bool(judge_completion(c, row, recipe.data.language).correct) for c in samples)
             for row, samples in zip(rows, sampled, strict=True)]
    switch = next((s for s, w in zip(rollouts["step"], rollouts["written"], strict=True) if w >= 0.5), None)
    return {
        "pass_at_1": results["overall"]["pass_at_1"], "pass_at_k": pass_at_ks(right, len(sampled[0])),
        "samples": len(sampled[0]), "right_by_prompt": right,  # for the intervals
        "longer_pass_at_1": results.get("longer", {}).get("pass_at_1"),
        "mean_length": results["overall"]["mean_length"],
        "series": series | {f"rollouts_{k}": v for k, v in rollouts.items()},
        "written_switch_step": switch,
        "final": {**{name: quarter(series[name]) for name in LOGGED},
                  **{k: quarter(v) for k, v in rollouts.items() if k != "step"}},
    }


def audit(recipe: Any, task_data: Ref, base: Ref, r1_zero: Ref | None, k: int) -> dict[str, Any]:
    """The step-0 audit: the base sampled `k` times per test prompt at the rollout temperature (T=1)
    on the task prompt, and 16 times on the practice prompt ("Work it out, then check your work"):
    the share of its answers with a written check and what those checks did; and pass@k of the base
    and of R1-Zero (`r1_zero`, sampled the same way) for k up to `k`."""
    rows = list(load_split(task_data, "test"))
    tokenizer = load_tokenizer(base.path, recipe.model.eos_token)
    cap = recipe.eval.max_new_tokens

    def sampled(model: Any, questions: list[str], n: int) -> list[list[Any]]:
        prompts = [render(tokenizer, messages(q, recipe.data.template)) for q in questions]
        return generate(model, tokenizer, prompts, max_new_tokens=cap, temperature=1.0, n=n, batch_size=256,
                        seed=recipe.seed, desc=f"lab audit (k={n})")

    def checks(samples: list[list[Any]]) -> dict[str, Any]:
        outcomes = {o: 0 for o in ("caught", "broke", "missed", "confirmed")}
        per_prompt = [[check_outcome(c.text, str(row["answer"])) for c in cs] for row, cs in zip(rows, samples, strict=True)]
        done = [o for p in per_prompt for o in p]
        for o in done:
            if o:
                outcomes[o] += 1
        return {"checked": sum(o is not None for o in done) / len(done), "outcomes": outcomes,
                "checked_by_prompt": [fmean(o is not None for o in p) for p in per_prompt]}

    def right(samples: list[list[Any]]) -> list[int]:
        return [sum(bool(judge_completion(c, row, recipe.data.language).correct) for c in cs)
                for row, cs in zip(rows, samples, strict=True)]

    model = inference_model(base.path, None, recipe.model.dtype)
    task = sampled(model, [r["prompt"] for r in rows], k)
    practice = sampled(model, [world.PRACTICE_PROMPTS["check"].format(expression=world.show(world.terms_of(
        r["metadata"]))) for r in rows], 16)
    out: dict[str, Any] = {"k": k, "base": {"task": checks(task), "practice": checks(practice)},
                           "pass_at_k": {}, "right_by_prompt": {"base": right(task)}}
    if r1_zero is not None:
        tuned = inference_model(base.path, adapter_path(r1_zero), recipe.model.dtype)
        out["right_by_prompt"]["r1_zero"] = right(sampled(tuned, [r["prompt"] for r in rows], k))
    # the summary the plots and the per-seed texts read, from the counts the intervals read
    out["pass_at_k"] = {model: pass_at_ks(counts, k) for model, counts in out["right_by_prompt"].items()}
    return out
