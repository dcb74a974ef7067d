"""The run report: runs/<run_id>/report/ with PNG plots of every training stage and the eval table.
Every flow ends with it (flows/prefect_tasks.py); `r1 report RUN_ID` rebuilds it.

Everything is read back from the run store (each stage's log_history.json and manifest, each
evaluation's eval.json), so a report can be rebuilt for any run at any time: `r1 report RUN_ID`.
One figure per metric, one line per training stage (x = the stage's own optimizer step), plus a
bar chart of the evaluation (test split) across stages; index.md ties them together, and index.html is
the same page with the plots embedded (one file a browser opens, served by `make serve`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and workers
import matplotlib.pyplot as plt  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from core import tracking  # noqa: E402
from core.atomic import write_json_atomic  # noqa: E402
from core.layout import EVAL_RESULTS, LOG_HISTORY  # noqa: E402
from core.runstore import RunStore  # noqa: E402
from rewards.monitors import NAMES as MONITORS  # noqa: E402 (zero-weight statistics, not rewards)
from stages import graph  # noqa: E402
from stages.evaluation import evaluated_name, format_table  # noqa: E402

log = logging.getLogger(__name__)

# The evaluated stages in the graph's order: fixes each stage's colour and the order of legends and tables.
STAGE_ORDER = graph.EVALUATED
EVAL_RATES = (("pass_at_1", "pass@1"), ("cons_at_k", "cons@k"), ("greedy_accuracy", "greedy accuracy"),
              ("language_consistency", "language consistency"))


def _order(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), stage) if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def _style(stage: str) -> dict[str, Any]:
    """A colour and marker per stage that stay the same in every figure."""
    i = _order(stage)[0]
    return {"color": plt.get_cmap("tab10")(i % 10), "marker": "os^Dv<>ph*"[i % 10], "markersize": 4}


def histories(store: RunStore, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """stage -> its trainer's per-step log entries, for every finished training stage, in pipeline order."""
    out = {}
    for m in sorted(store.stages(run_id), key=lambda m: _order(m["stage"])):
        path = store.stage_dir(run_id, m["stage"]) / LOG_HISTORY
        if path.is_file():
            out[m["stage"]] = [h for h in json.loads(path.read_text()) if "step" in h and "train_runtime" not in h]
    return out


def eval_results(store: RunStore, run_id: str) -> dict[str, dict[str, Any]]:
    """evaluated name -> eval.json of every finished evaluation stage, in pipeline order."""
    found = {}
    for m in store.stages(run_id):
        name = evaluated_name(m["stage"])
        path = store.stage_dir(run_id, m["stage"]) / EVAL_RESULTS
        if name is not None and path.is_file():
            found[name] = json.loads(path.read_text())
    return dict(sorted(found.items(), key=lambda kv: _order(kv[0])))


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(h["step"], h[key]) for h in history
           if isinstance(h.get(key), int | float) and not math.isnan(h[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def _panel(ax: Any, hists: dict[str, list[dict[str, Any]]], key: str, title: str, ylabel: str) -> bool:
    """One line per stage that logged `key`; False when none did."""
    drawn = False
    for stage, history in hists.items():
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, label=stage, linewidth=1.6, **_style(stage))
            drawn = True
    ax.set_title(title)
    ax.set_xlabel("optimizer step (within the stage)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(title="stage", fontsize=8)
    else:
        ax.text(0.5, 0.5, "not logged by any stage", ha="center", va="center", transform=ax.transAxes, color="gray")
    return drawn


def _figure(path: Path, panels: list[tuple[str, str, str]], hists: dict[str, list[dict[str, Any]]],
            suptitle: str, extra: Any = None) -> Path | None:
    """Save one figure with a panel per (key, title, ylabel); None when nothing was logged."""
    cols = min(len(panels), 2)  # two panels a row keeps four reward functions readable
    rows = math.ceil(len(panels) / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.2 * rows), squeeze=False)
    axes = list(grid.flat)
    drawn = [_panel(ax, hists, key, title, ylabel) for ax, (key, title, ylabel) in zip(axes, panels, strict=False)]
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if extra is not None:
        drawn.append(extra(axes))
    if not any(drawn):
        plt.close(fig)
        return None
    if len(panels) > 1:  # a single panel's own title says it all
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reward_functions(hists: dict[str, list[dict[str, Any]]]) -> list[str]:
    names = {k.split("/")[1] for h in hists.values() for e in h for k in e
             if k.startswith("rewards/") and k.endswith("/mean")}
    return sorted(names - MONITORS)


def _guard_line(store: RunStore, run_id: str) -> Any:
    """The validation accuracy checks of a stage's reward-hacking guard, drawn on the accuracy panel."""
    guarded = {m["stage"]: m["metrics"]["guard_history"] for m in store.stages(run_id)
               if (m.get("metrics") or {}).get("guard_history")}

    def draw(axes: Any) -> bool:
        if not guarded:
            return False
        ax = axes[0]
        for stage, guard in guarded.items():
            ax.plot([g["step"] for g in guard], [g["validation_accuracy"] for g in guard], linestyle="--",
                    label=f"{stage} (validation, guard)", **_style(stage))
        ax.legend(title="stage", fontsize=8)
        return True

    return draw


def eval_figure(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars of the test-split rates per evaluated stage; response length and reflection words beside."""
    if not results:
        return None
    names = list(results)
    fig, (ax, ax_len, ax_refl) = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [3, 1, 1]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        overall = results[name].get("overall", {})
        values = [overall.get(key) or 0.0 for key, _ in EVAL_RATES]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(EVAL_RATES))]
        bars = ax.bar(xs, values, width, label=name, color=_style(name)["color"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        for side, key in ((ax_len, "mean_length"), (ax_refl, "reflection_words")):
            side.bar_label(side.bar([i], [overall.get(key) or 0.0], 0.7, color=_style(name)["color"]),
                           fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(EVAL_RATES)), [label for _, label in EVAL_RATES])
    ax.set_ylabel("rate on test prompts")
    ax.set_ylim(0, 1.1)
    ax.set_title("evaluation by stage (test split)")
    ax.legend(title="stage", fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    for side, title, ylabel in ((ax_len, "mean response length", "tokens"),
                                (ax_refl, "reflection words", "per response (wait, check, ...)")):
        side.set_xticks(range(len(names)), names, rotation=30, ha="right")
        side.set_xlabel("stage")
        side.set_ylabel(ylabel)
        side.set_title(title)
        side.set_ylim(bottom=0)
        side.margins(y=0.15)
        side.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def checks_table(results: dict[str, dict[str, Any]]) -> str:
    """Per evaluated stage, from its test samples: how often a response checks or corrects itself,
    the accuracy of those that do and those that do not, and the length of right and wrong ones."""
    def share(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def tokens(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    rows = [[name, share(o.get("reflection_rate")), share(o.get("accuracy_reflected")),
             share(o.get("accuracy_unreflected")), tokens(o.get("mean_length_correct")),
             tokens(o.get("mean_length_incorrect"))]
            for name, o in ((n, r.get("overall", {})) for n, r in results.items())]
    return _table(["stage", "responses with a check", "accuracy with a check", "accuracy without",
                   "length if right", "length if wrong"], rows)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def build_report(store: RunStore, run_id: str) -> Path:
    """Write runs/<run_id>/report/ (PNGs + index.md) from what the run store holds; returns index.md."""
    out = store.root / run_id / "report"
    out.mkdir(parents=True, exist_ok=True)
    hists = histories(store, run_id)
    grpo = {s: h for s, h in hists.items() if any("reward" in e for e in h)}
    figures: list[tuple[str, Path | None]] = []

    rewards = reward_functions(grpo)
    figures.append(("Total reward (weighted sum of the reward functions)", _figure(
        out / "reward.png", [("reward", "total reward", "mean reward per completion")], grpo,
        "GRPO reward by stage")))
    if rewards:
        figures.append(("Reward per function", _figure(
            out / "rewards_per_function.png",
            [(f"rewards/{r}/mean", r, "mean reward") for r in rewards], grpo, "reward per function, by stage")))
    figures.append(("Accuracy", _figure(
        out / "accuracy.png",
        [("rewards/accuracy/mean", "answer accuracy of GRPO rollouts", "share of correct answers"),
         ("mean_token_accuracy", "SFT next-token accuracy", "token accuracy")],
        hists, "accuracy by stage", extra=_guard_line(store, run_id))))
    figures.append(("Mean response length", _figure(
        out / "response_length.png", [("completions/mean_length", "mean response length", "tokens")], grpo,
        "response length by stage (the paper's 'thinking time')")))
    figures.append(("Reflection words", _figure(
        out / "reflection.png",
        [("rewards/reflected/mean", "rollouts that check or correct themselves", "share of rollouts"),
         ("rewards/reflection_words/mean", "reflection words per completion", "words (wait, check, ...)"),
         ("rewards/reflection_rate/mean", "reflection-word rate", "share of chain-of-thought words")],
        grpo, "reflection words by stage ('aha' moments)")))
    figures.append(("Language consistency", _figure(
        out / "language_consistency.png",
        [("rewards/language_consistency/mean", "language consistency", "share of CoT words in the target language")],
        grpo, "language consistency by stage")))
    figures.append(("Training loss", _figure(out / "loss.png", [("loss", "training loss", "loss")], hists,
                                             "training loss by stage")))
    results = eval_results(store, run_id)
    figures.append(("Evaluation (test split)", eval_figure(results, out / "eval.png")))

    drawn = [(t, p) for t, p in figures if p is not None]
    index = out / "index.md"
    index.write_text(_index(store, run_id, results, drawn))
    (out / HTML).write_text(_html(run_id, _index(store, run_id, results, drawn, embed=True)))
    shown = sorted((m["stage"], m["ref"]["version"], m["ref"]["sha256"]) for m in store.stages(run_id))
    log_to_wandb(store.root, run_id, {p.stem: p for _, p in drawn}, hashlib.sha256(repr(shown).encode()).hexdigest())
    log.info("report for %s: %s", run_id, index)
    return index


WANDB_MARK = "report.json"  # runs/<run_id>/wandb/report.json: what the plots in W&B were drawn from


def log_to_wandb(store_root: Path, run_id: str, images: dict[str, Path], drawn_from: str) -> bool:
    """Log the report's plots as images in a W&B run of the run's group (job_type `report`), once
    per `drawn_from` (a digest of the stages they show): rebuilding the report of an unchanged run,
    as a resume does, opens no new W&B run. Returns whether it logged."""
    run_root = store_root / run_id
    mark = run_root / "wandb" / WANDB_MARK
    if not tracking.enabled() or not images or (
            mark.is_file() and json.loads(mark.read_text()).get("drawn_from") == drawn_from):
        return False
    try:
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", tracking.PROJECT), group=run_id,
                         job_type="report", name=f"{run_id}/report", dir=str(run_root), mode=tracking.mode(),
                         reinit="finish_previous",
                         settings=wandb.Settings(silent=True, x_disable_stats=True, console="off"))
        run.log({f"report/{name}": wandb.Image(str(path), caption=name) for name, path in images.items()})
        run.finish()
        mark.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(mark, {"drawn_from": drawn_from, "wandb_run": run.id})
        return True
    except Exception as exc:  # tracking never fails a run
        log.warning("W&B: could not log the report of %s: %s", run_id, exc)
        return False


HTML = "index.html"
REPORT_PORT = 4201  # the report server's default port (shell/report_server.py, started by `make serve`)
REPORT_URL_ENV = "R1_REPORT_URL"


def report_url(run_id: str) -> str:
    """Where the report server shows a run's HTML report: R1_REPORT_URL (set by `make serve` for its
    worker), else the default port on this machine."""
    base = os.environ.get(REPORT_URL_ENV, f"http://127.0.0.1:{REPORT_PORT}").rstrip("/")
    return f"{base}/{run_id}/report/{HTML}"
STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
         "th:first-child,td:first-child{text-align:left}img{max-width:100%}code{font-size:90%}")


def _html(run_id: str, markdown: str) -> str:
    """index.md as one self-contained page: the plots are embedded, so the file works anywhere."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>run report {run_id}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}</body></html>\n")


def _machines(manifests: list[dict[str, Any]]) -> list[str]:
    """Where the stages were built: each machine once, with the stages built on it."""
    seen: dict[str, list[str]] = {}
    for m in manifests:
        if "machine" in m:
            mc = m["machine"]
            bf16 = f"native bfloat16 ({', '.join(mc['native_bf16'])})" if mc["native_bf16"] else "no native bfloat16"
            where = (f"{m.get('host', '?')}: {mc['cpu']}, {mc['capability']}, {bf16}, {mc['cores']} core(s), "
                     f"{mc['threads']} torch thread(s), {mc['gpus']} GPU(s)")
            seen.setdefault(where, []).append(m["stage"])
    return [f"Built on {where} ({len(stages)} stage(s))." for where, stages in seen.items()] + ([""] if seen else [])


def _index(store: RunStore, run_id: str, results: dict[str, dict[str, Any]],
           figures: list[tuple[str, Path]], embed: bool = False) -> str:
    """The report as Markdown; `embed` puts each PNG in as a data URI instead of linking the file."""
    manifests = sorted(store.stages(run_id), key=lambda m: (m["finished_at"]))
    stage_rows = [[m["stage"], m["ref"]["version"], m["ref"]["sha256"][:12], m.get("wall_s", "-"),
                   f"`{m['ref']['path']}`"] for m in manifests]
    parts = [f"# Run report: {run_id}", "",
             f"Run store: `{store.root / run_id}`. Lineage: `r1 lineage {run_id}`. "
             f"W&B runs (group `{run_id}`): `{store.root / run_id / 'wandb'}`.", "",
             "## Evaluation (test split; stress splits apart)", "",
             format_table(results) if results else "_no evaluation in this run yet_", "",
             *(["### Does checking pay, and are long answers right ones?", "", checks_table(results), ""]
               if results else []),
             "## Stages", "", _table(["stage", "version", "sha256", "wall s", "output"], stage_rows), "",
             *_machines(manifests)]
    parts += ["## Plots", ""] if figures else []
    for title, path in figures:
        src = f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" if embed else path.name
        parts += [f"### {title}", "", f"![{title}]({src})", ""]
    return "\n".join(parts)
