"""The paper table in the pocket world (make bench-paper), over seeds.

Each seed runs the `r1-zero`, `r1-pipeline` and `distill` flows in one run id
(`bench-paper-<recipe>-seed<N>`; the recipe's `seed` set to N, which draws that seed's own world:
its task prompts and splits, its corpus, its initialisation), with the table's models evaluated on
the test split at k=16 samples (temperature 0.6, top-p 0.95) and the pipeline's other stages at k=4
(only their pass@1 is reported), the stress splits (transfer, longer) only for the models whose
stress figures the table reports (base, R1-Zero, R1). Nothing here selects a setting: the guard and
probes read the validation split, the table reads test. The analyses of written work read the
samples the evaluations saved (samples-<split>.jsonl) rather than drawing them again. It writes
that seed's figures to bench/results/paper_seed<N>.json, then gathers every seed file present into
bench/results/paper_table.json. `--seeds` runs several seeds side by side, one process each, at most
as many at a time as there are cores, each pinned to cores of its own (shell/side_by_side.py;
generation barely uses a second thread), and gathers once all have finished:

    {"seeds": [...], "rows": {MODEL: {pass_at_1, pass_at_1_ci, cons_at_16, mean_length,
     language_consistency, reflection_rate}}, "by_seed": {"<N>": {"splits", "rows", "pipeline",
     "r1_zero_rollouts", "transfer", "longer", "base_styles", "checks", "checks_within_prompt",
     "checks_within_prompts", "r1_anatomy", "aha", ...}}, "verdicts": [...], "distill_sweep": [...]}

`rows` are means over seeds; `pass_at_1_ci` is a 95% bootstrap interval resampling seeds, then
prompts within each seed. The verdicts are the eight targets of the pocket world, each checked on
every seed. `checks_within_prompts` compares R1-Zero's checked and unchecked answers on the same
prompt (target 4 is judged on that difference) and counts what its written checks did;
`r1_anatomy` counts where R1's written work goes wrong on the test and stress prompts (the chain's
copy, the reductions, where a check starts). `--distill-sweep` trains the distillation student at
several sizes on one seed's teacher data (distilled vs RL-only pass@1 per size: `distill_sweep`).
Plots (every seed gathered): bench/results/paper_rollouts.png, paper_test.png, paper_distill_sweep.png.

    .venv/bin/python -m bench.paper --seeds 0 1 2 [--recipe configs/pocket.yaml] [--set KEY=VALUE ...]
    .venv/bin/python -m bench.paper --seed 0      # one seed, in this process
    .venv/bin/python -m bench.paper --distill-sweep 48 64 80 96 [--seed 0]   # student widths, 4 layers
    .venv/bin/python -m bench.paper --gather      # only rebuild paper_table.json from the seed files
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from core import machine  # noqa: E402
from core.config import load_recipe  # noqa: E402
from core.generation import generate  # noqa: E402
from core.layout import LOG_HISTORY
from core.modeling import adapter_path, inference_model, load_tokenizer  # noqa: E402
from core.runstore import RunStore  # noqa: E402
from core.stats import bootstrap, bootstrap_seeds  # noqa: E402
from data.chat import messages, render  # noqa: E402
from data.saved import STRESS, load_split  # noqa: E402
from flows.training import FLOWS  # noqa: E402
from pocket import world  # noqa: E402
from pocket.analysis import OUTCOMES, check_outcome, tally_anatomy  # noqa: E402
from shell import side_by_side  # noqa: E402
from shell.prefect_server import own_home  # noqa: E402
from stages import graph, runner  # noqa: E402
from stages.evaluation import eval_rows, load_results, load_samples, score_sample, stage_name  # noqa: E402

RESULTS = Path(__file__).parent / "results"
EVAL_OVERRIDES = ["eval.samples=16", "eval.temperature=0.6", "eval.top_p=0.95", "eval.prompts=null"]
FIELDS = ("pass_at_1", "cons_at_16", "mean_length", "language_consistency", "reflection_rate")
PIPELINE = ("cold_start", "reasoning_rl", "sft", "all_scenario_rl")
STRESS_ROWS = ("base", "r1_zero", "r1")
PIPELINE_SAMPLES = 4  # k for the pipeline's stages outside the table (stage_samples_override)


def paper_rows() -> dict[str, str]:
    """The paper table's rows -> the stage each evaluates: the base, the last stage each of R1-Zero and
    R1 evaluates, and the two students the distill flow trains."""
    last = {name: graph.flow_evaluations(flow)[-1] for name, flow in graph.FLOWS.items() if flow.base == graph.BASE}
    students = graph.FLOWS["distill"].targets
    return {"base": graph.BASE, "r1_zero": last["r1-zero"], "r1": last["r1-pipeline"]} | {s: s for s in students}


def seed_run_id(recipe_name: str, seed: int) -> str:
    """The one run id of a seed's three flows (its log goes in that run's directory too)."""
    return f"bench-paper-{recipe_name}-seed{seed}"


def seed_overrides(seed: int) -> list[str]:
    """The recipe's seed: the pocket recipes leave data.seed, model.pocket.seed and distill.student.seed
    unset, so it draws the seed's whole world (a recipe that pins them varies only training)."""
    return [f"seed={seed}"]


# --- one seed ----------------------------------------------------------------------------------


def aha_rollout(recipe: Any, store: RunStore, run_id: str, tries: int = 512) -> dict[str, str] | None:
    """A rollout of the final R1-Zero policy (training prompts, the GRPO temperature) in which a
    check catches a real slip (`world.caught_slip`: the work went wrong, the check names the wrong
    value and the answer is right); None when none of `tries` samples does."""
    refs = {name: store.ref(run_id, name) for name in (graph.TASK_DATA, graph.BASE, "r1_zero")}
    tokenizer = load_tokenizer(refs[graph.BASE].path)
    model = inference_model(refs[graph.BASE].path, adapter_path(refs["r1_zero"]), recipe.model.dtype)
    rows = list(load_split(refs[graph.TASK_DATA], "train"))[: tries // 8]
    prompts = [render(tokenizer, messages(r["prompt"], recipe.data.template)) for r in rows]
    samples = generate(model, tokenizer, prompts, max_new_tokens=recipe.r1_zero.max_completion_length,
                       temperature=recipe.r1_zero.temperature, n=8, seed=recipe.seed, desc="looking for an aha rollout")
    for row, completions in zip(rows, samples, strict=True):
        for c in completions:
            if world.caught_slip(c.text, int(row["answer"])):
                return {"prompt": row["prompt"], "answer": row["answer"], "completion": c.text}
    return None


def saved_samples(recipe: Any, store: RunStore, run_id: str, evaluated: str, splits: tuple[str, ...]
                  ) -> dict[str, tuple[list[dict[str, Any]], list[list[Any]]]]:
    """The k samples the evaluation of `evaluated` drew on each split (its samples-<split>.jsonl):
    split -> (rows, samples per row)."""
    ref = store.ref(run_id, stage_name(evaluated))
    task_data = store.ref(run_id, graph.evaluation_of(evaluated).inputs["task_data"])
    out = {}
    for split in splits:
        rows = eval_rows(recipe.eval, task_data, split)
        out[split] = rows, load_samples(ref, rows, split)
    return out


def r1_anatomy(recipe: Any, store: RunStore, run_id: str) -> dict[str, dict[str, int]]:
    """R1's written work on the test and the stress prompts (its evaluation's samples), tallied by
    tally_anatomy: on chains longer than any it trained on, is it the copy of the chain or the
    reductions that go wrong?"""
    drawn = saved_samples(recipe, store, run_id, paper_rows()["r1"], ("test", *STRESS))
    return {split: tally_anatomy(rows, sampled, recipe.data.language) for split, (rows, sampled) in drawn.items()}


def checks_within_prompts(recipe: Any, store: RunStore, run_id: str) -> dict[str, Any]:
    """Does a check pay on the *same* prompt? Checks are written more on long chains, where every
    answer is less accurate, so the pooled with/without accuracies mix difficulty in. Over the
    prompts where R1-Zero's evaluation drew both checked and unchecked samples, this compares the two. It
    also counts what the written checks did (check_outcome): a check pays only if it catches more
    slips than it breaks right work."""
    rows, sampled = saved_samples(recipe, store, run_id, paper_rows()["r1_zero"], ("test",))["test"]
    diffs, pooled, outcomes = [], {True: [], False: []}, Counter({o: 0 for o in OUTCOMES.values()})
    for row, completions in zip(rows, sampled, strict=True):
        outcomes.update(o for c in completions if (o := check_outcome(c.text, str(row["answer"]))))
        scored = [score_sample(c, row, recipe.data.language) for c in completions]
        checked = [s.correct for s in scored if s.reflection_words]
        plain = [s.correct for s in scored if not s.reflection_words]
        pooled[True] += checked
        pooled[False] += plain
        if checked and plain:
            diffs.append(statistics.fmean(checked) - statistics.fmean(plain))
    # the pooled figures of these samples (eval.json's accuracy_reflected / _unreflected)
    return {"pooled_with": statistics.fmean(pooled[True]) if pooled[True] else None,
            "pooled_without": statistics.fmean(pooled[False]) if pooled[False] else None,
            "prompts_with_both": len(diffs), "prompts": len(rows),
            "mean_difference": statistics.fmean(diffs) if diffs else None,
            "difference_ci": bootstrap(diffs) if len(diffs) > 1 else None,
            "checked_better": sum(d > 0 for d in diffs), "unchecked_better": sum(d < 0 for d in diffs),
            "check_outcomes": dict(outcomes), "anatomy": tally_anatomy(rows, sampled, recipe.data.language)}


def stress_override() -> str:
    """eval.stress_stages: the stages behind the table's transfer and longer columns."""
    return f"eval.stress_stages=[{', '.join(paper_rows()[row] for row in STRESS_ROWS)}]"


def stage_samples_override() -> str:
    """eval.stage_samples: the pipeline's stages outside the table report only pass@1, which k=4
    estimates without bias; k=16 (cons@16, narrow intervals) is for the table's models."""
    return f"eval.stage_samples={{{', '.join(f'{s}: {PIPELINE_SAMPLES}' for s in PIPELINE if s not in paper_rows().values())}}}"


def run_seed(recipe_path: str, overrides: list[str], seed: int) -> dict[str, Any]:
    overrides = [*EVAL_OVERRIDES, stress_override(), stage_samples_override(), *seed_overrides(seed), *overrides]
    recipe = load_recipe(recipe_path, overrides)
    run_id = seed_run_id(recipe.name, seed)
    store = RunStore()
    walls = {}
    for name, flow in FLOWS.items():
        t0 = time.perf_counter()
        flow(recipe=recipe, run_id=run_id)
        walls[name] = round(time.perf_counter() - t0, 1)
        print(f"[bench-paper seed {seed}] {name} finished in {walls[name]:.0f} s", flush=True)

    def results(evaluated: str) -> dict[str, Any]:
        ref = store.ref(run_id, stage_name(evaluated))
        if ref is None:
            raise SystemExit(f"{run_id}/{stage_name(evaluated)} is missing: did a flow fail?")
        return load_results(ref)

    rows, by_prompt = {}, {}
    for row, evaluated in paper_rows().items():
        res = results(evaluated)
        o = res["overall"]
        by_prompt[row] = res["pass_at_1_by_prompt"]
        rows[row] = {"pass_at_1": o["pass_at_1"], "pass_at_1_ci": bootstrap(by_prompt[row]),
                     "cons_at_16": o["cons_at_k"], "mean_length": o["mean_length"],
                     "language_consistency": o["language_consistency"], "reflection_rate": o["reflection_rate"]}
    zero = results(paper_rows()["r1_zero"])
    # what each stage took when it was built (a rerun over finished stages only reuses them)
    build = {m["stage"]: m["wall_s"] for m in store.stages(run_id)}
    history = [h for h in json.loads((Path(store.ref(run_id, "r1_zero").path) / LOG_HISTORY).read_text())
               if "reward" in h]
    aha = aha_rollout(recipe, store, run_id)
    tasks, base = store.manifest(run_id, graph.TASK_DATA), store.manifest(run_id, graph.BASE)
    within = checks_within_prompts(recipe, store, run_id)
    return {
        "seed": seed, "run_id": run_id, "rows": rows, "pass_at_1_by_prompt": by_prompt,
        "pipeline": {stage: results(stage)["overall"]["pass_at_1"] for stage in PIPELINE},
        "r1_zero_rollouts": {"step": [h["step"] for h in history],
                             "accuracy": [h["rewards/accuracy/mean"] for h in history],
                             "mean_length": [h["completions/mean_length"] for h in history],
                             "reflection_rate": [h["rewards/reflected/mean"] for h in history]},
        **{split: {row: results(paper_rows()[row]).get(split, {}).get("pass_at_1") for row in STRESS_ROWS}
           for split in STRESS},
        "splits": {split: tasks["metrics"].get(f"{split}_rows", 0) for split in ("train", "validation", "test", *STRESS)},
        "base_styles": {prompt: base["metrics"][prompt]["styles"] | {"accuracy": base["metrics"][prompt]["accuracy"]}
                        for prompt in ("task", "practice")},
        "checks": {"with": zero["overall"]["accuracy_reflected"], "without": zero["overall"]["accuracy_unreflected"]},
        "checks_within_prompt": {"diff": within["mean_difference"], "ci": within["difference_ci"]},
        "checks_within_prompts": within,
        "r1_anatomy": r1_anatomy(recipe, store, run_id),
        "length": {"correct": zero["overall"]["mean_length_correct"], "incorrect": zero["overall"]["mean_length_incorrect"]},
        "aha": aha, "flow_wall_s": walls, "wall_s": round(sum(walls.values()), 1),
        "stage_build_s": build, "build_s": round(sum(build.values()), 1),
    }


# --- the targets -------------------------------------------------------------------------------


def quarters(values: list[float]) -> tuple[float, float]:
    n = max(1, len(values) // 4)
    return statistics.fmean(values[:n]), statistics.fmean(values[-n:])


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _within(w: dict[str, Any] | None) -> str:
    if not w or w["mean_difference"] is None:
        return ""
    return (f"; on the same prompt ({w['prompts_with_both']} prompts with both) checked minus unchecked "
            f"{w['mean_difference']:+.3f}, checked better on {w['checked_better']}, worse on {w['unchecked_better']}"
            + _outcomes(w.get("check_outcomes")) + _check_sources(w.get("anatomy")))


def _share(a: dict[str, int], key: str, of: str = "written") -> str:
    return f"{a[key] / a[of]:.0%}" if a.get(of) else "-"


def _check_sources(a: dict[str, int] | None) -> str:
    if not a or not a.get("checked"):
        return ""
    return (f"; checks start from the prompt's chain in {_share(a, 'check_from_prompt', 'checked')}, from the "
            f"work's first line in {_share(a, 'check_from_work', 'checked')}")


def anatomy_text(by_split: dict[str, dict[str, int]] | None) -> str:
    """R1's work on test vs stress prompts: how often the first line copies the chain, and how
    often the whole work is clean (copied and every line reduced right)."""
    if not by_split:
        return ""
    parts = [f"{split} chain copied {_share(a, 'copied')}, clean work {_share(a, 'clean')}"
             for split, a in by_split.items()]
    return "; R1's written work: " + ", ".join(parts)


def _outcomes(o: dict[str, int] | None) -> str:
    if not o:
        return ""
    return (f"; written checks caught {o['caught']} slips and broke {o['broke']} right answers "
            f"(confirmed {o['confirmed']}, missed {o['missed']})")


def verdicts(s: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The pocket world's eight targets on one seed, with the measured margins."""
    r = s["rows"]
    b, z, r1, d, st = r["base"], r["r1_zero"], r["r1"], r["student_distilled"], r["student_rl"]
    len0, len1 = quarters(s["r1_zero_rollouts"]["mean_length"])
    ref0, ref1 = quarters(s["r1_zero_rollouts"]["reflection_rate"])
    checks, pipe, longer = s["checks"], s["pipeline"], s["longer"]
    within = s["checks_within_prompt"]
    # a check pays on the same prompt: the within-prompt difference's 95% interval lies above zero
    # (the pooled figures mix in difficulty: checks are written more on long chains)
    check_pays = within["ci"] is not None and within["ci"][0] > 0
    return [
        ("1 headroom: base pass@1 <= 0.50", b["pass_at_1"] <= 0.50, f"{b['pass_at_1']:.3f}"),
        ("2 R1-Zero pass@1 >= base + 0.25", z["pass_at_1"] >= b["pass_at_1"] + 0.25,
         f"{z['pass_at_1']:.3f} vs {b['pass_at_1']:.3f} ({z['pass_at_1'] - b['pass_at_1']:+.3f})"),
        ("3 thinking longer: rollout length last/first quarter >= 1.5 and test length >= 1.3x base",
         len1 >= 1.5 * len0 and z["mean_length"] >= 1.3 * b["mean_length"],
         f"rollouts {len0:.1f} -> {len1:.1f} ({len1 / max(len0, 1e-9):.2f}x); test {z['mean_length']:.1f} vs "
         f"{b['mean_length']:.1f} ({z['mean_length'] / max(b['mean_length'], 1e-9):.2f}x)"),
        ("4 checking: rollout reflection rate last quarter >= 0.20 and >= 2x first; on the same prompt checked "
         "answers more accurate (95% interval above 0)",
         ref1 >= 0.20 and ref1 >= 2 * ref0 and check_pays,
         f"rollouts {ref0:.3f} -> {ref1:.3f}; same prompt {_f(within['diff'])} "
         f"{'[' + ', '.join(f'{x:+.3f}' for x in within['ci']) + ']' if within['ci'] else '(no interval)'}; "
         f"pooled with a check {_f(checks['with'])} vs without {_f(checks['without'])}"
         f"{_within(s.get('checks_within_prompts'))}"),
        ("5 reasoning_rl pass@1 >= cold_start + 0.05", pipe["reasoning_rl"] >= pipe["cold_start"] + 0.05,
         f"{pipe['reasoning_rl']:.3f} vs {pipe['cold_start']:.3f}"),
        ("6 R1: language consistency >= 0.95 and > R1-Zero's; pass@1 >= R1-Zero's",
         r1["language_consistency"] >= 0.95 and r1["language_consistency"] > z["language_consistency"]
         and r1["pass_at_1"] >= z["pass_at_1"],
         f"lang {r1['language_consistency']:.3f} vs {z['language_consistency']:.3f}; pass@1 {r1['pass_at_1']:.3f} vs "
         f"{z['pass_at_1']:.3f}"),
        ("7 distilled student pass@1 >= RL-only student + 0.10", d["pass_at_1"] >= st["pass_at_1"] + 0.10,
         f"{d['pass_at_1']:.3f} vs {st['pass_at_1']:.3f}"),
        ("8 longer chains (beyond every training document): R1 pass@1 >= base + 0.10",
         longer["r1"] is not None and longer["base"] is not None and longer["r1"] >= longer["base"] + 0.10,
         f"{_f(longer['r1'])} vs {_f(longer['base'])}"
         + (f" ({longer['r1'] - longer['base']:+.3f})" if None not in (longer["r1"], longer["base"]) else "")
         + f"; transfer (practised lengths) {_f(s['transfer']['r1'])} vs {_f(s['transfer']['base'])}"
         + anatomy_text(s.get("r1_anatomy"))),
    ]


# --- all seeds ---------------------------------------------------------------------------------


def gather() -> dict[str, Any]:
    seeds = {}
    for path in sorted(RESULTS.glob("paper_seed*.json")):
        s = json.loads(path.read_text())
        seeds[str(s["seed"])] = s
    if not seeds:
        raise SystemExit(f"no {RESULTS}/paper_seed*.json yet: run `python -m bench.paper --seed 0` first")
    rows = {}
    for model in paper_rows():
        rows[model] = {f: statistics.fmean(s["rows"][model][f] for s in seeds.values()) for f in FIELDS}
        rows[model]["pass_at_1_ci"] = bootstrap_seeds([s["pass_at_1_by_prompt"][model] for s in seeds.values()])
    by_seed = {k: {key: v for key, v in s.items() if key != "pass_at_1_by_prompt"} for k, s in seeds.items()}
    verdict_rows = []
    for k, s in seeds.items():
        verdict_rows += [{"seed": int(k), "target": t, "holds": ok, "measured": m} for t, ok, m in verdicts(s)]
    sweep_file = RESULTS / "paper_distill_sweep.json"
    sweep = json.loads(sweep_file.read_text()) if sweep_file.is_file() else []
    return {"seeds": sorted(int(k) for k in seeds), "rows": rows, "by_seed": by_seed, "verdicts": verdict_rows,
            "distill_sweep": sweep}


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str) -> None:
    """Grouped bars: one group per entry of `groups`, one bar per series (None: no bar)."""
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        bars = ax.bar([x for x, v in zip(xs, values, strict=True) if v is not None],
                      [v for v in values if v is not None], width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(range(len(groups)), groups, fontsize=8, rotation=15)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def plot(table: dict[str, Any], out: Path) -> list[Path]:
    """bench/results/paper_rollouts.png (R1-Zero's rollouts per GRPO step, one line per seed) and
    paper_test.png (the test split's findings and the stress splits side by side, one bar per seed)."""
    seeds = table["by_seed"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, ax, ylabel in (("accuracy", axes[0], "share of rollouts correct"),
                            ("mean_length", axes[1], "tokens"),
                            ("reflection_rate", axes[2], "share of rollouts with a check")):
        for k, s in seeds.items():
            roll = s["r1_zero_rollouts"]
            ax.plot(roll["step"], roll[key], label=f"seed {k}")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"R1-Zero rollouts: {key.replace('_', ' ')}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out / "paper_rollouts.png"]
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 6, figsize=(26, 4.2))
    named = {f"seed {k}": s for k, s in seeds.items()}
    models = list(table["rows"])
    _bars(axes[0], models, {n: [s["rows"][m]["pass_at_1"] for m in models] for n, s in named.items()},
          "test pass@1 (k=16)", "pass@1")
    _bars(axes[1], list(PIPELINE), {n: [s["pipeline"][st] for st in PIPELINE] for n, s in named.items()},
          "the pipeline, stage by stage", "pass@1")
    _bars(axes[2], list(world.ANSWER_STYLES),
          {n: [s["base_styles"]["task"][st] for st in world.ANSWER_STYLES] for n, s in named.items()},
          "the base's answers at step 0 (task prompt, T=1)", "share of answers")
    _bars(axes[3], ["same prompt: checked - unchecked"],
          {n: [s["checks_within_prompt"]["diff"]] for n, s in named.items()},
          "R1-Zero test answers: does a check pay on the same prompt?", "accuracy difference")
    _bars(axes[4], list(STRESS_ROWS), {n: [s["transfer"][m] for m in STRESS_ROWS] for n, s in named.items()},
          "transfer (6-7 terms: practised, never asked)", "pass@1")
    _bars(axes[5], list(STRESS_ROWS), {n: [s["longer"][m] for m in STRESS_ROWS] for n, s in named.items()},
          "longer (8 terms: beyond every training document)", "pass@1")
    for ax in (axes[0], axes[1], axes[2], axes[4], axes[5]):
        ax.set_ylim(0, 1.1)
    axes[3].axhline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    paths.append(out / "paper_test.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if table.get("distill_sweep"):
        paths.append(plot_sweep(table["distill_sweep"], out / "paper_distill_sweep.png"))
    return paths


def plot_sweep(sweep: list[dict[str, Any]], path: Path) -> Path:
    """Distilled vs RL-only student pass@1 by student size (parameters), one line each."""
    sweep = sorted(sweep, key=lambda r: r["parameters"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("distilled", "distilled (SFT on the teacher's samples)"), ("rl", "RL only (GRPO)"),
                       ("base", "the student base")):
        ax.plot([r["parameters"] / 1e6 for r in sweep], [r[key] for r in sweep], marker="o", label=label)
    for r in sweep:
        ax.annotate(r["size"], (r["parameters"] / 1e6, r["distilled"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("student parameters (M)")
    ax.set_ylabel("test pass@1 (k=16)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"distillation vs RL alone by student size (seed {sweep[0]['seed']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the distillation sweep ------------------------------------------------------------------------

STUDENT_LAYERS = 4


def student_overrides(width: int) -> list[str]:
    """A student `width` wide, STUDENT_LAYERS deep, its MLP 3x as wide (the teacher's proportions)."""
    return [f"distill.student.hidden_size={width}", f"distill.student.num_layers={STUDENT_LAYERS}",
            f"distill.student.intermediate_size={3 * width}"]


def distill_sweep(recipe_path: str, overrides: list[str], seed: int, widths: list[int]) -> list[dict[str, Any]]:
    """Distilled vs RL-only students of each width on the teacher data of the seed's run (its
    rejection-sampled set, built by `--seed N` first): each size in a run of its own that takes the
    seed's task data and teacher dataset as given, so the teacher is never trained again."""
    store = RunStore()
    base_overrides = [*EVAL_OVERRIDES, stress_override(), stage_samples_override(), *seed_overrides(seed), *overrides]
    name = load_recipe(recipe_path, base_overrides).name
    teacher = seed_run_id(name, seed)
    given = {stage: store.ref(teacher, stage) for stage in (graph.TASK_DATA, "rejection_sampling")}
    if None in given.values():
        raise SystemExit(f"{teacher} has no finished task data and rejection sampling: run --seed {seed} first")
    out = []
    for width in widths:
        recipe = load_recipe(recipe_path, [*base_overrides, *student_overrides(width)])
        run_id = f"{teacher}-student{width}"
        targets = [stage_name(s) for s in ("student_base", "student_distilled", "student_rl")]
        refs = runner.build(targets, recipe, store, run_id, given)
        res = {s: load_results(refs[stage_name(s)])["overall"]["pass_at_1"]
               for s in ("student_base", "student_distilled", "student_rl")}
        parameters = AutoModelForCausalLM.from_pretrained(refs["student_base"].path).num_parameters()
        row = {"seed": seed, "size": f"{width}x{STUDENT_LAYERS}", "width": width,
               "parameters": parameters, "base": res["student_base"],
               "distilled": res["student_distilled"], "rl": res["student_rl"]}
        print(f"[distill sweep] {row}", flush=True)
        out.append(row)
    return out


def print_table(table: dict[str, Any]) -> None:
    print(f"\nThe paper table, pocket world (seeds {table['seeds']}; k=16, T=0.6, top-p 0.95)")
    print(f"{'model':18} {'pass@1':>7} {'95% CI':>15} {'cons@16':>8} {'len':>6} {'lang':>6} {'reflect':>8}")
    for name, r in table["rows"].items():
        lo, hi = r["pass_at_1_ci"]
        print(f"{name:18} {r['pass_at_1']:7.3f} {f'[{lo:.3f}, {hi:.3f}]':>15} {r['cons_at_16']:8.3f} "
              f"{r['mean_length']:6.1f} {r['language_consistency']:6.3f} {r['reflection_rate']:8.3f}")
    print("\ntargets:")
    for v in table["verdicts"]:
        print(f"  seed {v['seed']} [{'holds' if v['holds'] else 'FAILS'}] {v['target']}: {v['measured']}")
    for k, s in table["by_seed"].items():
        if s.get("aha"):
            print(f"\naha rollout (seed {k}, answer {s['aha']['answer']}): {s['aha']['prompt']}\n  {s['aha']['completion']}")


def markdown(table: dict[str, Any]) -> str:
    """README's findings tables, rendered from the gathered table (tests/test_paper_table.py checks
    that README quotes them): the rows, every seed, the base's styles at step 0, the targets' margins
    and the distillation sweep."""
    seeds = table["by_seed"]
    out = ["| model | pass@1 | 95% CI | cons@16 | length | language consistency | reflection rate |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for model, r in table["rows"].items():
        lo, hi = r["pass_at_1_ci"]
        out.append(f"| {model} | {r['pass_at_1']:.3f} | [{lo:.3f}, {hi:.3f}] | {r['cons_at_16']:.3f} | "
                   f"{r['mean_length']:.1f} | {r['language_consistency']:.3f} | {r['reflection_rate']:.3f} |")
    out += ["", "| seed | base | R1-Zero | R1 | distilled / RL-only student | pipeline: cold start -> reasoning RL -> "
            "SFT -> all-scenario RL | transfer: base / R1-Zero / R1 | longer: base / R1-Zero / R1 |",
            "|---|---:|---:|---:|---|---|---|---|"]
    for seed, s in seeds.items():
        rows, p = s["rows"], s["pipeline"]
        stress = [" / ".join(f"{s[split][m]:.3f}" for m in STRESS_ROWS) for split in ("transfer", "longer")]
        out.append(f"| {seed} | {rows['base']['pass_at_1']:.3f} | {rows['r1_zero']['pass_at_1']:.3f} | "
                   f"{rows['r1']['pass_at_1']:.3f} | {rows['student_distilled']['pass_at_1']:.3f} / "
                   f"{rows['student_rl']['pass_at_1']:.3f} | {' -> '.join(f'{p[st]:.3f}' for st in PIPELINE)} | "
                   f"{stress[0]} | {stress[1]} |")
    out += ["", "| seed | prompt | direct | worked | checked | accuracy: direct / worked / checked |",
            "|---|---|---:|---:|---:|---|"]
    for seed, s in seeds.items():
        for prompt, st in s["base_styles"].items():
            acc = st["accuracy"]
            out.append(f"| {seed} | {prompt} | " + " | ".join(f"{st[k]:.0%}" for k in world.ANSWER_STYLES) + " | "
                       + " / ".join(f"{acc[k]:.2f}" if k in acc else "-" for k in world.ANSWER_STYLES) + " |")
    out += ["", "| target | " + " | ".join(f"seed {k}" for k in seeds) + " |", "|---|" + "---|" * len(seeds)]
    by_target: dict[str, dict[int, dict[str, Any]]] = {}
    for v in table["verdicts"]:
        by_target.setdefault(v["target"], {})[v["seed"]] = v
    for target, vs in by_target.items():
        cells = [("holds: " if vs[int(k)]["holds"] else "**misses**: ") + "; ".join(vs[int(k)]["measured"].split("; ")[:2])
                 for k in seeds]
        out.append(f"| {target.split(':')[0]} | " + " | ".join(cells) + " |")
    if table["distill_sweep"]:
        out += ["", "| student | parameters | student base | distilled | RL only | distilled - RL only |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in sorted(table["distill_sweep"], key=lambda r: r["parameters"]):
            out.append(f"| {r['size']} | {r['parameters'] / 1e6:.2f}M | {r['base']:.3f} | {r['distilled']:.3f} | "
                       f"{r['rl']:.3f} | {r['distilled'] - r['rl']:+.3f} |")
    return "\n".join(out)


# What a seed's process prints that the terminal should see: each stage it built, each flow it finished.
PROGRESS = re.compile(r" - (\w+: built v\w+ in [\d.]+ s)|\[bench-paper seed \d+\] (.*)")


def seed_jobs(recipe_path: str, overrides: list[str], seeds: list[int]) -> list[side_by_side.Job]:
    """One `--seed N` process per seed, logging to runs/<run id>/bench-paper.log. Without a Prefect
    server to share, each gets its own PREFECT_HOME: side-by-side temporary servers on one SQLite
    database lock each other out."""
    import prefect.settings

    name = load_recipe(recipe_path, overrides).name
    api = prefect.settings.get_current_settings().api.url
    runs = RunStore().root
    jobs = []
    for seed in seeds:
        argv = [sys.executable, "-m", "bench.paper", "--recipe", recipe_path, "--seed", str(seed), "--no-gather",
                *[f"--set={o}" for o in overrides]]
        env = {"PREFECT_API_URL": api} if api else {"PREFECT_HOME": str(own_home(f"bench-paper-seed{seed}"))}
        log = runs / seed_run_id(name, seed) / "bench-paper.log"
        jobs.append(side_by_side.Job(f"seed {seed}", argv, log, env))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="configs/pocket.yaml")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seeds", type=int, nargs="+", metavar="N",
                      help="run these seeds side by side, one process each (logs: runs/<run id>/bench-paper.log), "
                           "then gather every seed file")
    what.add_argument("--seed", type=int, help="run this one seed in this process, then gather every seed file")
    what.add_argument("--gather", action="store_true", help="only gather the seed files into paper_table.json")
    what.add_argument("--markdown", action="store_true",
                      help="print README's findings tables from the committed paper_table.json")
    what.add_argument("--distill-sweep", type=int, nargs="+", metavar="WIDTH",
                      help="students of these widths (4 layers) on one seed's teacher data (--sweep-seed, default 0): "
                           "distilled vs RL-only pass@1 per size, into paper_distill_sweep.json")
    parser.add_argument("--sweep-seed", type=int, default=0, help="the seed whose teacher data the sweep uses")
    parser.add_argument("--jobs", type=int, help="with --seeds: at most this many seeds at a time (never more than the cores; default: as many)")
    parser.add_argument("--no-gather", dest="gather_after", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.jobs is not None and (args.seeds is None or args.jobs < 1):
        parser.error("--jobs takes a positive number and goes with --seeds")
    if args.markdown:
        print(markdown(json.loads((RESULTS / "paper_table.json").read_text())))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine.use_own_cores()
    if args.seeds is not None:
        jobs = seed_jobs(args.recipe, args.overrides, args.seeds)
        codes = side_by_side.run(jobs, args.jobs or len(jobs), PROGRESS)
        failed = [j for j in jobs if codes.get(j.name) != 0]
        if failed:
            raise SystemExit("bench-paper: " + "; ".join(f"{j.name} failed, see {j.log}" for j in failed)
                             + " (run again to resume: finished stages are reused)")
    if args.distill_sweep is not None:
        sweep = distill_sweep(args.recipe, args.overrides, args.sweep_seed, args.distill_sweep)
        (RESULTS / "paper_distill_sweep.json").write_text(json.dumps(sweep, indent=2) + "\n")
    if args.seed is not None:
        s = run_seed(args.recipe, args.overrides, args.seed)
        (RESULTS / f"paper_seed{args.seed}.json").write_text(json.dumps(s, indent=2) + "\n")
    if not args.gather_after:
        return
    table = gather()
    (RESULTS / "paper_table.json").write_text(json.dumps(table, indent=2) + "\n")
    plot(table, RESULTS)
    print_table(table)


if __name__ == "__main__":
    main()
