"""Evaluation, as a stage (eval_<name>) and as the maths behind it: pass@1 from k samples, cons@k by
majority vote, greedy accuracy, response length, language consistency and reflection words, per task
and overall, on the test split (never train or validation), and pass@1 on each stress split. The stage
evaluates a base model, or the base with a stage's adapter, and writes eval.json, table.md and
what the model wrote: samples-<split>.jsonl, one line per prompt with its k samples and greedy reply.

pass@1 is estimated as the mean share of correct samples per prompt (the paper's estimator with
k samples at temperature 0.6, top-p 0.95). cons@k takes the most frequent extracted answer among
the k samples (answers compared after normalisation; samples without an answer do not vote; a tie
goes to the answer reached first, i.e. the earliest sample among the tied ones) and checks it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core import devices
from core.config import EvalConfig, TemplateConfig
from core.generation import Completion, generate
from core.layout import EVAL_RESULTS, EVAL_TABLE, SAMPLES
from core.modeling import ModelError, adapter_path, inference_model, load_tokenizer
from core.runstore import Ref, RunStore, StageOutcome, StageResult
from core.stage import StageCall
from data.chat import messages, render
from data.saved import STRESS, has_split, load_split
from rewards.accuracy import is_correct, normalize
from rewards.completions import think_prefilled
from rewards.verdict import Verdict, judge_completion

PREFIX = "eval_"


def stage_name(evaluated: str) -> str:
    """The evaluation stage of `evaluated` (a stage, or a name given to a model): eval_<name>. The one
    place that builds these names."""
    return f"{PREFIX}{evaluated}"


def evaluated_name(stage: str) -> str | None:
    """What an evaluation stage evaluated (None when `stage` is not an evaluation)."""
    return stage.removeprefix(PREFIX) if stage.startswith(PREFIX) else None


def score_sample(completion: Completion, row: dict[str, Any], language: str, think_prefilled: bool = False) -> Verdict:
    """The verdict (rewards/verdict.py) an evaluation counts for one sampled completion."""
    return judge_completion(completion, row, language, think_prefilled)


def pass_at_1(samples: Sequence[Verdict]) -> float:
    """Share of correct samples for one prompt."""
    return sum(s.correct for s in samples) / len(samples) if samples else 0.0


def majority_answer(samples: Sequence[Verdict]) -> str | None:
    """The most frequent normalised answer; ties go to the one reached first; None when none answered."""
    votes = Counter(normalize(s.answer) for s in samples if s.answer is not None)
    if not votes:
        return None
    top = max(votes.values())
    return next(normalize(s.answer) for s in samples if s.answer is not None and votes[normalize(s.answer)] == top)


def cons_at_k(samples: Sequence[Verdict], row: dict[str, Any]) -> bool:
    """Whether the majority answer of the samples is correct."""
    answer = majority_answer(samples)
    return answer is not None and is_correct(answer, row)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(rows: Sequence[dict[str, Any]], sampled: Sequence[Sequence[Verdict]],
              greedy: Sequence[Verdict]) -> dict[str, Any]:
    """Metrics per task and overall from scored samples (k per row) and greedy completions."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups["overall"].append(i)
        groups[str(row.get("task"))].append(i)

    def metrics(idx: list[int]) -> dict[str, float | None]:
        flat = [s for i in idx for s in sampled[i]]
        reflected = [s for s in flat if s.reflection_words]
        plain = [s for s in flat if not s.reflection_words]
        right = [s.num_tokens for s in flat if s.correct]
        wrong = [s.num_tokens for s in flat if not s.correct]
        return {
            "prompts": len(idx),
            "pass_at_1": _mean([pass_at_1(sampled[i]) for i in idx]),
            "cons_at_k": _mean([float(cons_at_k(sampled[i], rows[i])) for i in idx]),
            "greedy_accuracy": _mean([float(greedy[i].correct) for i in idx]),
            "mean_length": _mean([s.num_tokens for s in flat]),
            "language_consistency": _mean([s.language_share for s in flat]),
            "reflection_words": _mean([s.reflection_words for s in flat]),
            # Does checking one's work pay, and is a long answer a right one? (None: no such samples)
            "reflection_rate": _mean([float(s.reflection_words > 0) for s in flat]),
            "accuracy_reflected": _mean([s.correct for s in reflected]) if reflected else None,
            "accuracy_unreflected": _mean([s.correct for s in plain]) if plain else None,
            "mean_length_correct": _mean(right) if right else None,
            "mean_length_incorrect": _mean(wrong) if wrong else None,
        }

    per_task = {task: metrics(idx) for task, idx in sorted(groups.items()) if task != "overall"}
    return {"overall": metrics(groups["overall"]), "per_task": per_task, "k": len(sampled[0]) if sampled else 0,
            "pass_at_1_by_prompt": [pass_at_1(samples) for samples in sampled]}  # for bootstrap intervals


def metrics_on(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], cfg: EvalConfig,
                    template: TemplateConfig, language: str, seed: int = 0, desc: str = "evaluating",
                    samples_file: Path | None = None) -> dict[str, Any]:
    """Sample k completions and one greedy completion per row (of the test or a stress split), score and summarise them;
    with `samples_file`, also write every completion there (write_samples)."""
    prompts = [render(tokenizer, messages(r["prompt"], template)) for r in rows]
    sampled = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                       top_p=cfg.top_p, n=cfg.samples, batch_size=cfg.batch_size, seed=seed, desc=f"{desc} (k)")
    greedy = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                      desc=f"{desc} (greedy)")
    if samples_file is not None:
        write_samples(samples_file, rows, sampled, [g for (g,) in greedy])
    pre = [think_prefilled(p) for p in prompts]
    scored = [[score_sample(c, r, language, f) for c in comps] for r, comps, f in zip(rows, sampled, pre, strict=True)]
    scored_greedy = [score_sample(c, r, language, f) for r, (c,), f in zip(rows, greedy, pre, strict=True)]
    out = summarize(rows, scored, scored_greedy)
    out["examples"] = [{"prompt": r["prompt"], "answer": r["answer"], "greedy": g[0].text}
                       for r, g in list(zip(rows, greedy, strict=True))[:5]]
    return out


def write_samples(path: Path, rows: Sequence[dict[str, Any]], sampled: Sequence[Sequence[Completion]],
                  greedy: Sequence[Completion]) -> None:
    """One JSON line per row: its prompt and answer, its k samples and its greedy completion (text,
    tokens generated, whether it ended), for people to read and for analyses that would otherwise
    draw the same samples again."""
    with path.open("w") as f:
        for row, comps, g in zip(rows, sampled, greedy, strict=True):
            f.write(json.dumps({"prompt": row["prompt"], "answer": row["answer"],
                                "samples": [asdict(c) for c in comps], "greedy": asdict(g)}) + "\n")


def load_samples(ref: Ref, rows: Sequence[dict[str, Any]], split: str = "test") -> list[list[Completion]]:
    """The k samples an evaluation stage drew for each of `rows` on `split`, in the rows' order."""
    path = Path(ref.path) / SAMPLES.format(split=split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples saved (an evaluation built before they were kept?); "
                                f"rebuild it with --force")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    if [line["prompt"] for line in lines] != [r["prompt"] for r in rows]:
        raise ValueError(f"{path}: its prompts are not the {len(rows)} {split} rows asked for, in order")
    return [[Completion(**c) for c in line["samples"]] for line in lines]


COLUMNS = ("pass_at_1", "cons_at_k", "greedy_accuracy", "mean_length", "language_consistency", "reflection_words",
           "reflection_rate")


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per evaluated model/stage, of the overall metrics on the test split
    and pass@1 on each stress split; when the stages drew different k (`eval.stage_samples`), each
    cons@k cell names its k."""
    ks = {r.get("k") for r in results.values()}
    k = next(iter(ks)) if len(ks) == 1 else "k"
    stress = [split for split in STRESS if any(split in r for r in results.values())]
    header = ["stage", "pass@1", f"cons@{k}", "greedy acc", "mean length", "lang consistency", "reflection words",
              "reflection rate", *(f"{split} pass@1" for split in stress)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, res in results.items():
        o = res["overall"]
        cells = [f"{o['pass_at_1']:.3f}", f"{o['cons_at_k']:.3f}" + (f" (k={res.get('k')})" if k == "k" else ""), f"{o['greedy_accuracy']:.3f}",
                 f"{o['mean_length']:.1f}", f"{o['language_consistency']:.3f}", f"{o['reflection_words']:.2f}",
                 f"{o.get('reflection_rate', 0.0):.3f}",
                 *(f"{res[split]['pass_at_1']:.3f}" if split in res else "-" for split in stress)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the stage ---------------------------------------------------------------------------------


def eval_rows(cfg: EvalConfig, task_data_ref: Ref, split: str = "test") -> list[dict[str, Any]]:
    """The rows an evaluation uses: at most `eval.prompts` of the test split, or `eval.stress_prompts`
    of a stress split; none when the task data has no such split (a recipe without stress splits)."""
    if not has_split(task_data_ref, split):
        return []
    rows = list(load_split(task_data_ref, split))
    limit = cfg.prompts if split == "test" else cfg.stress_prompts
    return rows[:limit] if limit else rows


def load_results(ref: Ref) -> dict[str, Any]:
    """The eval.json an evaluation stage wrote."""
    return json.loads((Path(ref.path) / EVAL_RESULTS).read_text())


def import_adapter(store: RunStore, run_id: str, path: str) -> Ref:
    """Record a user's PEFT adapter directory (hashed by content) so it can be evaluated like a stage's."""
    adapter = Path(path)
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"{path}: not a PEFT adapter directory (expected adapter_config.json in it)")
    return store.run_stage(run_id, "adapter_import", {"path": str(adapter.resolve())}, {},
                           lambda work: StageResult(artifact=adapter.resolve())).ref


def evaluate(recipe: Any, cfg: EvalConfig, task_data_ref: Ref, base_ref: Ref, adapter_ref: Ref | None,
             name: str, out: Path | None = None) -> dict[str, Any]:
    """eval.json's content: the test split's metrics of the base (with the adapter), and each stress
    split's overall figures when the task data has it and `eval.stress_stages` names this stage.
    With `out`, each split's samples go to out/samples-<split>.jsonl."""
    cfg = cfg.model_copy(update={"samples": cfg.stage_samples.get(name, cfg.samples)})
    tokenizer = load_tokenizer(base_ref.path, recipe.model.eos_token)
    model = inference_model(base_ref.path, adapter_path(adapter_ref) if adapter_ref else None, recipe.model.dtype)

    def split_metrics(rows: list[dict[str, Any]], split: str, desc: str) -> dict[str, Any]:
        return metrics_on(model, tokenizer, rows, cfg, recipe.data.template, recipe.data.language,
                               seed=recipe.seed, desc=desc,
                               samples_file=out / SAMPLES.format(split=split) if out else None)

    results = split_metrics(eval_rows(cfg, task_data_ref), "test", f"evaluating {name}")
    results["split"] = "test"
    if cfg.stress_stages is None or name in cfg.stress_stages:
        for split in STRESS:
            rows = eval_rows(cfg, task_data_ref, split)
            if rows:
                results[split] = split_metrics(rows, split, f"evaluating {name} ({split})")["overall"]
    results["device"] = str(model.device)  # where it ran (bench/gpu_smoke.py checks it)
    return results


def run(call: StageCall) -> StageOutcome:
    """Evaluate the `base` input, with the `adapter` input applied when there is one."""
    cfg, recipe = call.cfg, call.recipe
    task_data_ref, base_ref, adapter_ref = call.inputs["task_data"], call.inputs["base"], call.inputs.get("adapter")
    name = evaluated_name(call.spec.name)

    def build(work: Path) -> StageResult:
        # on a GPU host in a process of its own: the next stage gets the whole GPU back
        results = devices.on_one_gpu(evaluate, recipe, cfg, task_data_ref, base_ref, adapter_ref, name, work)
        (work / EVAL_RESULTS).write_text(json.dumps(results, indent=2))
        (work / EVAL_TABLE).write_text(format_table({name: results}) + "\n")
        return StageResult(metrics=results["overall"])

    return call.run(build)
