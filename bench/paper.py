"""The paper table in the pocket world (make bench-paper).

Runs, on configs/pocket.yaml and in one run id, the `r1-zero`, `r1-pipeline` and `distill` flows
(the base and the teacher's stages are shared through the run store), evaluates the base, R1-Zero,
R1 (the four stages), the distilled student and the RL-only student with pass@1 from 16 samples
(temperature 0.6, top-p 0.95) and cons@16, and prints one table. Writes bench/results/paper_table.json
and the R1-Zero training curves (held-out accuracy, response length, reflection words) as PNGs.

    .venv/bin/python -m bench.paper [--recipe configs/pocket.yaml] [--set KEY=VALUE ...] [--run-id ID]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core.config import load_recipe  # noqa: E402
from core.runstore import RunStore  # noqa: E402
from flows.distill import distill  # noqa: E402
from flows.pipeline import r1_pipeline  # noqa: E402
from flows.r1_zero import r1_zero  # noqa: E402
from stages import graph  # noqa: E402
from stages.evaluation import heldout_rows, load_results, stage_name  # noqa: E402

RESULTS = Path(__file__).parent / "results"
FLOWS = {"r1-zero": r1_zero, "r1-pipeline": r1_pipeline, "distill": distill}


def paper_rows() -> dict[str, str]:
    """The paper table's rows -> the stage each evaluates: the base, the last stage each of R1-Zero and
    R1 evaluates, and the two students the distill flow trains."""
    last = {name: graph.flow_evaluations(flow)[-1] for name, flow in graph.FLOWS.items() if flow.base == graph.BASE}
    students = graph.FLOWS["distill"].targets
    return {"base": graph.BASE, "r1_zero": last["r1-zero"], "r1": last["r1-pipeline"]} | {s: s for s in students}


EVAL_OVERRIDES = ["eval.samples=16", "eval.temperature=0.6", "eval.top_p=0.95", "eval.prompts=null"]


def run_flows(recipe_path: str, overrides: list[str], run_id: str) -> dict[str, float]:
    """The three flows in one run; returns wall seconds per flow."""
    walls = {}
    for name, flow in FLOWS.items():
        t0 = time.perf_counter()
        flow(recipe=recipe_path, overrides=overrides, run_id=run_id)
        walls[name] = round(time.perf_counter() - t0, 1)
        print(f"[bench-paper] {name} finished in {walls[name]:.0f} s", flush=True)
    return walls


def table_rows(store: RunStore, run_id: str) -> dict[str, dict[str, float]]:
    rows = {}
    for row, evaluated in paper_rows().items():
        stage = stage_name(evaluated)
        ref = store.ref(run_id, stage)
        if ref is None:
            raise SystemExit(f"{run_id}/{stage} is missing: did a flow fail?")
        o = load_results(ref)["overall"]
        rows[row] = {"pass_at_1": o["pass_at_1"], "cons_at_16": o["cons_at_k"], "mean_length": o["mean_length"],
                     "language_consistency": o["language_consistency"]}
    return rows


def r1_zero_curve(store: RunStore, run_id: str) -> tuple[dict[str, list[float]], list[dict]]:
    """Held-out curve (accuracy, length, reflection words at each probe) and the per-step training log."""
    path = Path(store.ref(run_id, paper_rows()["r1_zero"]).path)
    curve = json.loads((path / "heldout_curve.json").read_text())
    history = [h for h in json.loads((path / "log_history.json").read_text()) if "reward" in h]
    return {"step": [p["step"] for p in curve], "accuracy": [p["heldout_accuracy"] for p in curve],
            "mean_length": [p["heldout_mean_length"] for p in curve],
            "reflection_words": [p["heldout_reflection_words"] for p in curve]}, history


def plot_curves(curve: dict[str, list[float]], history: list[dict], out: Path) -> list[Path]:
    steps = [h["step"] for h in history]
    paths = []
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(curve["step"], curve["accuracy"], "o-", color="tab:blue", label="held-out accuracy (greedy)")
    ax1.set_xlabel("GRPO step")
    ax1.set_ylabel("held-out accuracy", color="tab:blue")
    ax1.set_ylim(0, 1)
    ax2 = ax1.twinx()
    ax2.plot(steps, [h["completions/mean_length"] for h in history], color="tab:orange", alpha=0.6,
             label="rollout mean length")
    ax2.plot(curve["step"], curve["mean_length"], "s--", color="tab:red", label="held-out mean length")
    ax2.set_ylabel("response length (tokens)", color="tab:red")
    lines = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize=8)
    ax1.set_title("R1-Zero (pocket): accuracy and response length during RL")
    fig.tight_layout()
    paths.append(out / "r1_zero_accuracy_length.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [h["rewards/reflection_words/mean"] for h in history], color="tab:purple",
            label="rollouts: reflection words per completion")
    ax.plot(curve["step"], curve["reflection_words"], "o--", color="tab:green", label="held-out (greedy)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reflection words per response")
    ax.set_title('R1-Zero (pocket): reflection words ("wait", "check", ...) during RL')
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "r1_zero_reflection_words.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def verdicts(rows: dict[str, dict[str, float]], rollout_length: list[float]) -> list[tuple[str, bool, str]]:
    """The paper's findings as checks, with the measured margins. Response length is the paper's
    measure (its Figure 3): the mean length of the RL rollouts, first quarter of steps against last."""
    b, z, r1 = rows["base"], rows["r1_zero"], rows["r1"]
    d, s = rows["student_distilled"], rows["student_rl"]
    n = max(1, len(rollout_length) // 4)
    early, late = sum(rollout_length[:n]) / n, sum(rollout_length[-n:]) / n
    return [
        ("R1-Zero pass@1 >= base + 0.20", z["pass_at_1"] >= b["pass_at_1"] + 0.20,
         f"{z['pass_at_1']:.3f} vs {b['pass_at_1']:.3f} ({z['pass_at_1'] - b['pass_at_1']:+.3f})"),
        ("R1-Zero response length rises", late > early, f"{early:.1f} -> {late:.1f} tokens (rollouts)"),
        ("R1 language consistency >= 0.95", r1["language_consistency"] >= 0.95, f"{r1['language_consistency']:.3f}"),
        ("R1 language consistency > R1-Zero's", r1["language_consistency"] > z["language_consistency"],
         f"{r1['language_consistency']:.3f} vs {z['language_consistency']:.3f}"),
        ("R1 pass@1 >= R1-Zero's", r1["pass_at_1"] >= z["pass_at_1"], f"{r1['pass_at_1']:.3f} vs {z['pass_at_1']:.3f}"),
        ("distilled student > RL-only student", d["pass_at_1"] > s["pass_at_1"],
         f"{d['pass_at_1']:.3f} vs {s['pass_at_1']:.3f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="configs/pocket.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--run-id", default=None, help="default: bench-paper-<recipe name>")
    args = parser.parse_args()
    overrides = EVAL_OVERRIDES + args.overrides
    recipe = load_recipe(args.recipe, overrides)
    run_id = args.run_id or f"bench-paper-{recipe.name}"
    store = RunStore()
    t0 = time.perf_counter()
    walls = run_flows(args.recipe, overrides, run_id)
    rows = table_rows(store, run_id)
    curve, history = r1_zero_curve(store, run_id)
    rollout_length = [h["completions/mean_length"] for h in history]
    RESULTS.mkdir(parents=True, exist_ok=True)
    pngs = plot_curves(curve, history, RESULTS)
    result = {"rows": rows, "r1_zero_curve": curve,
              "r1_zero_rollouts": {"step": [h["step"] for h in history], "mean_length": rollout_length,
                                   "reflection_words": [h["rewards/reflection_words/mean"] for h in history]},
              "recipe": recipe.name, "run_id": run_id,
              "k": recipe.eval.samples,
              "heldout_prompts": len(heldout_rows(recipe.eval, store.ref(run_id, graph.TASK_DATA))),
              "flow_wall_s": walls, "wall_s": round(time.perf_counter() - t0, 1),
              "verdicts": [{"finding": f, "holds": ok, "measured": m} for f, ok, m in verdicts(rows, rollout_length)]}
    (RESULTS / "paper_table.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nThe paper table, pocket world ({result['heldout_prompts']} held-out prompts, k=16, T=0.6, top-p 0.95)")
    print(f"{'model':20} {'pass@1':>8} {'cons@16':>8} {'mean len':>9} {'lang cons':>10}")
    for name, r in rows.items():
        print(f"{name:20} {r['pass_at_1']:8.3f} {r['cons_at_16']:8.3f} {r['mean_length']:9.1f} "
              f"{r['language_consistency']:10.3f}")
    print("\nfindings:")
    for f, ok, m in verdicts(rows, rollout_length):
        print(f"  [{'holds' if ok else 'FAILS'}] {f}: {m}")
    print(f"\nwall {result['wall_s']:.0f} s; wrote {RESULTS / 'paper_table.json'} and " + ", ".join(p.name for p in pngs))


if __name__ == "__main__":
    main()
