"""`make lab` (python -m lab): the ablation lab's arms on seeds side by side, then their verdicts.

    python -m lab [--arms reach dr_grpo ...] [--seeds 0 1 2] [--recipe configs/pocket.yaml] [--set K=V]
    python -m lab --seed 0 [--arms ...]     # one seed, in this process (the lab flow)
    python -m lab --gather                  # only judge the seed files again
    python -m lab --markdown                # README's table, from the committed lab.json
    python -m lab --list                    # the arms: claim, metric, criterion

Each seed is one process running the `lab` flow (lab/flow.py; logs in runs/lab-<recipe>-seed<N>/lab.log),
at most as many at a time as there are cores, each on cores of its own. Then every arm is judged on
every seed file present (bench/results/lab_seed<N>.json) into bench/results/lab.json, lab.md and
lab_*.png. A finished variant is reused from the run store: run again to resume.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core import machine  # noqa: E402
from core.runstore import RunStore  # noqa: E402
from lab.arms import ARMS, BY_NAME, Arm  # noqa: E402
from lab.flow import RESULTS, lab, seed_file  # noqa: E402
from shell import side_by_side  # noqa: E402
from shell.prefect_server import own_home  # noqa: E402

PROGRESS = re.compile(r" - (\w+: built v\w+ in [\d.]+ s)| - (lab seed \d+: .*)")


def gather(arms: list[Arm], results: Path = RESULTS) -> dict[str, Any]:
    """Every arm judged on the seed files (in `results`) that have it."""
    seeds = {}
    for path in sorted(results.glob("lab_seed*.json")):
        s = json.loads(path.read_text())
        seeds[s["seed"]] = s
    if not seeds:
        raise SystemExit(f"no {results}/lab_seed*.json yet: run `python -m lab --seed 0` first")
    rows = []
    for arm in arms:
        have = {seed: {**s["variants"], "audit": s.get("audit")} for seed, s in seeds.items() if arm.name in s["arms"]}
        if not have:
            continue
        verdict, measured, over_seeds = arm.judge(have)
        rows.append({"arm": arm.name, "claim": arm.claim, "source": arm.source, "metric": arm.metric,
                     "criterion": arm.criterion, "seeds": sorted(have), "verdict": verdict, "measured": measured,
                     "over_seeds": over_seeds})
    walls = {seed: s["walls"] for seed, s in seeds.items()}
    return {"arms": rows, "seeds": sorted(seeds), "walls": walls, "series": {
        seed: {name: v["series"] for name, v in s["variants"].items()} for seed, s in seeds.items()},
        "pass_at_k": {seed: s["audit"]["pass_at_k"] for seed, s in seeds.items() if s.get("audit")}}


def table(result: dict[str, Any], per_seed: bool = True) -> str:
    """The arms' markdown table: lab.md's, with the figures per seed, or README's without them."""
    cols = ["arm", "claim (source)", "over the seeds", *(["per seed"] if per_seed else []), "criterion", "verdict"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["arms"]:
        cells = [r["arm"], f"{r['claim']} ({r['source']})", r["over_seeds"], *([r["measured"]] if per_seed else []),
                 r["criterion"], f"**{r['verdict']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def lab_md(result: dict[str, Any]) -> str:
    return "\n".join([f"# The ablation lab (pocket world, seeds {result['seeds']})", "",
                      "Differences in pass@k: mean over seeds and test prompts (paired by prompt), 95% bootstrap "
                      "interval resampling seeds then prompts; per-step figures: mean (the seeds' range). The criteria "
                      "were written before the first run and judge the per-seed figures.", "", table(result)])


def plot(result: dict[str, Any]) -> list[Path]:
    """lab_steps.png: per variant, entropy, wrong-minus-right length and the written share per GRPO step
    (one line per variant, seeds averaged); lab_pass_at_k.png: base vs R1-Zero pass@k."""
    series = result["series"]
    names = sorted({n for s in series.values() for n in s})
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.2))
    for ax, key, label in ((axes[0], "entropy", "policy entropy"), (axes[1], "rollouts_length_gap",
                           "wrong minus right length at equal chain length (tokens)"),
                           (axes[2], "rollouts_written", "share of rollouts with written work"),
                           (axes[3], "rollouts_reflected", "share of rollouts with a reflection word")):
        for name in names:
            runs = [s[name] for s in series.values() if name in s]
            step_key = "rollouts_step" if key.startswith("rollouts_") else "step"
            steps = runs[0][step_key]
            values = [[r[key][i] for r in runs if i < len(r[key]) and r[key][i] is not None] for i in range(len(steps))]
            ax.plot(steps, [sum(v) / len(v) if v else None for v in values], label=name)
        ax.set_xlabel("GRPO step")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    paths = [RESULTS / "lab_steps.png"]
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if result["pass_at_k"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for seed, curves in result["pass_at_k"].items():
            for model, curve in curves.items():
                ks = sorted(int(k) for k in curve)
                ax.plot(ks, [curve[str(k)] for k in ks], marker="o", linestyle="-" if model == "base" else "--",
                        label=f"{model}, seed {seed}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (test split, T=1)")
        ax.set_title("does RL add reach? base vs R1-Zero", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        paths.append(RESULTS / "lab_pass_at_k.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def seed_jobs(recipe: str, arms: list[str], seeds: list[int], overrides: list[str]) -> list[side_by_side.Job]:
    name = Path(recipe).stem
    runs = RunStore().root
    return [side_by_side.Job(
        f"seed {seed}", [sys.executable, "-m", "lab", "--recipe", recipe, "--seed", str(seed), "--no-gather",
                         "--arms", *arms, *[f"--set={o}" for o in overrides]],
        runs / f"lab-{name}-seed{seed}" / "lab.log", {"PREFECT_HOME": str(own_home(f"lab-seed{seed}"))}) for seed in seeds]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="arms: " + ", ".join(BY_NAME))
    p.add_argument("--recipe", default="configs/pocket.yaml")
    p.add_argument("--arms", nargs="+", default=list(BY_NAME), metavar="ARM")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="N")
    what.add_argument("--seed", type=int, help="run this one seed in this process")
    what.add_argument("--gather", action="store_true", help="only judge the seed files present")
    what.add_argument("--list", action="store_true", help="list the arms and what would confirm or refute each")
    what.add_argument("--markdown", action="store_true", help="print README's table from the committed lab.json")
    p.add_argument("--no-gather", dest="gather_after", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    unknown = sorted(set(args.arms) - set(BY_NAME))
    if unknown:
        p.error(f"unknown arm(s) {unknown}; arms: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[a] for a in args.arms]
    if args.list:
        for a in ARMS:
            print(f"{a.name}: {a.claim} ({a.source})\n  measures: {a.metric}\n  {a.criterion}\n")
        return 0
    if args.markdown:
        print(table(json.loads((RESULTS / "lab.json").read_text()), per_seed=False), end="")
        return 0
    machine.use_own_cores()
    if args.seed is not None:
        lab(recipe=args.recipe, arms=args.arms, seed=args.seed, overrides=args.overrides)
        print(f"wrote {seed_file(args.seed)}")
        if not args.gather_after:
            return 0
    elif not args.gather:
        jobs = seed_jobs(args.recipe, args.arms, args.seeds, args.overrides)
        codes = side_by_side.run(jobs, len(jobs), PROGRESS)
        failed = [j for j in jobs if codes.get(j.name) != 0]
        if failed:
            raise SystemExit("lab: " + "; ".join(f"{j.name} failed, see {j.log}" for j in failed)
                             + " (run again to resume: finished variants are reused)")
    result = gather(chosen)
    (RESULTS / "lab.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "lab.md").write_text(lab_md(result))
    plot(result)
    print(lab_md(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
