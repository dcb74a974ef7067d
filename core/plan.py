"""Dry run: validate a recipe against what is installed and print its plan, without loading weights.

The plan is a table of the r1-pipeline's stages (and the r1-zero and distill flows): optimizer
steps, processes, training prompts, completions generated and an upper bound on generated tokens
(every completion at its length limit). Problems that would stop a run are errors, raised together
with the file and key of each; things to fix before a stage runs (a missing data file) are notes.

    r1 dry-run --recipe configs/qwen2.5-0.5b-instruct-gsm8k.yaml
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.config import (
    FileSource,
    GRPOStageConfig,
    HubSource,
    ReasoningGymSource,
    Recipe,
    RecipeError,
    SFTStageConfig,
)

# The adapters the r1-pipeline flow evaluates (flows/pipeline.py: the base and four stages).
PIPELINE_EVALS = ("base", "cold_start", "reasoning_rl", "sft", "all_scenario_rl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class StagePlan:
    flow: str
    stage: str
    what: str
    steps: int | None = None
    processes: int = 1
    prompts: int | None = None  # training prompts / examples the stage draws from (None: all of a file)
    generations: int = 0  # completions generated
    max_tokens: int = 0  # generated tokens if every completion ran to its limit


@dataclass
class Plan:
    recipe: Recipe
    source: str
    stages: list[StagePlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def total(self, flow: str | None = None) -> tuple[int, int]:
        rows = [s for s in self.stages if flow is None or s.flow == flow]
        return sum(s.generations for s in rows), sum(s.max_tokens for s in rows)


# --- validation --------------------------------------------------------------------------------


def _model_check(path: str, key: str, errors: list[str], notes: list[str]) -> None:
    """A local model path must exist and hold a causal LM config; a hub id is noted (cached or not)."""
    if path == "pocket":
        return
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            errors.append(f"{key}: {path!r} is a local path without a config.json (expected an HF model directory)")
        return
    if path.startswith(("/", ".", "~")) or not HUB_ID.match(path):
        errors.append(f"{key}: local model path {path!r} does not exist (expected an HF model directory or a "
                      f"hub id like Qwen/Qwen2.5-0.5B-Instruct)")
        return
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
    where = "in the local HF cache" if cached else \
        "not cached here: downloaded on first use, which needs network (HF_HUB_OFFLINE=0)"
    notes.append(f"{key}: hub model {path!r} ({where})")


def _file_check(path: str | None, key: str, notes: list[str]) -> None:
    if path and not Path(path).expanduser().exists():
        notes.append(f"{key}: file {path!r} does not exist yet; create it before this stage runs")


def validate(recipe: Recipe, source: str = "<recipe>") -> list[str]:
    """Raise RecipeError listing every problem that would stop a run; return notes (things to know)."""
    from rewards import registry

    errors: list[str] = []
    notes: list[str] = []
    grpo = {"reasoning_rl": recipe.reasoning_rl, "all_scenario_rl": recipe.all_scenario_rl,
            "r1_zero": recipe.r1_zero, "distill.rl": recipe.distill.rl}
    for key, cfg in grpo.items():
        try:
            notes += [f"{key}.rewards: {note}" for note in registry.validate(cfg.rewards)]
        except (KeyError, ValueError) as exc:
            errors.append(f"{key}.rewards: {exc}")
    _model_check(recipe.model.base, "model.base", errors, notes)
    _model_check(recipe.distill.student_model, "distill.student_model", errors, notes)
    for i, src in enumerate(recipe.data.sources):
        if isinstance(src, FileSource):
            _file_check(src.path, f"data.sources[{i}].path", notes)
        elif isinstance(src, HubSource):
            notes.append(f"data.sources[{i}]: hub dataset {src.name!r} ({src.subset or 'default'}/{src.split}) is "
                         "read at run time (needs network or the local datasets cache)")
    if recipe.model.base != "pocket" and not recipe.cold_start.dataset:
        errors.append("cold_start.dataset: a real model needs a cold-start file of {prompt, completion} rows "
                      "(the generated cold start exists for the pocket world only)")
    _file_check(recipe.cold_start.dataset, "cold_start.dataset", notes)
    _file_check(recipe.rejection_sampling.general_dataset, "rejection_sampling.general_dataset", notes)
    from core.generation import vllm_unavailable  # torch, imported only when a recipe is checked

    if reason := vllm_unavailable():
        if any(cfg.use_vllm for cfg in grpo.values()):
            notes.append(f"use_vllm: {reason}; GRPO rollouts will fall back to HF generate")
        if recipe.rejection_sampling.use_vllm:
            notes.append(f"rejection_sampling.use_vllm: {reason}; sampling will fall back to batched HF generate")
    if any(c.bf16 for c in (*grpo.values(), recipe.cold_start, recipe.sft)) and not _cuda():
        notes.append("bf16: true but no CUDA GPU here; a CPU run would need bf16: false")
    if errors:
        raise RecipeError(f"{source}: the recipe cannot run\n  " + "\n  ".join(errors))
    return notes


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- the plan ----------------------------------------------------------------------------------


def train_prompts(recipe: Recipe) -> int | None:
    """Training prompts after the held-out split, when every source's size is known."""
    sizes = []
    for src in recipe.data.sources:
        if isinstance(src, ReasoningGymSource):
            sizes.append(src.size)
        elif isinstance(src, HubSource) and src.limit:
            sizes.append(src.limit)
        else:
            return None
    return max(0, sum(sizes) - recipe.data.heldout_size)


def _limit(n: int | None, available: int | None) -> int | None:
    if n is None:
        return available
    return n if available is None else min(n, available)


def _grpo(flow: str, stage: str, cfg: GRPOStageConfig, available: int | None, what: str = "GRPO") -> StagePlan:
    # TRL: every optimizer step consumes per-device batch x accumulation x processes completions,
    # num_generations of them per prompt.
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * cfg.num_processes
    generations = cfg.steps * per_step
    rollout = "vLLM" if cfg.use_vllm else "HF generate"
    return StagePlan(flow, stage, f"{what} ({rollout}, {per_step // cfg.num_generations} prompts x "
                     f"{cfg.num_generations} per step)", cfg.steps, cfg.num_processes,
                     _limit(cfg.prompts, available), generations, generations * cfg.max_completion_length)


def _sft(flow: str, stage: str, cfg: SFTStageConfig, examples: int | None, what: str) -> StagePlan:
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * cfg.num_processes
    return StagePlan(flow, stage, f"{what} ({per_step} sequences per step)", cfg.steps, cfg.num_processes, examples)


def build_plan(recipe: Recipe, source: str = "<recipe>", evaluated: Sequence[str] = PIPELINE_EVALS) -> Plan:
    """Validate `recipe` and lay out what each stage will do (no model or dataset is loaded)."""
    plan = Plan(recipe, source, notes=validate(recipe, source))
    available = train_prompts(recipe)
    heldout = recipe.data.heldout_size
    m = recipe.model
    add = plan.stages.append
    if m.base == "pocket":
        add(StagePlan("r1-pipeline", "base", f"pretrain the pocket base ({m.pocket.hidden_size}d x "
                      f"{m.pocket.num_layers} layers) on {m.pocket.corpus_documents} documents", m.pocket.steps))
    else:
        add(StagePlan("r1-pipeline", "base", f"use {m.base} ({m.dtype})"))
    cs = recipe.cold_start
    add(_sft("r1-pipeline", "cold_start", cs, None if cs.dataset else cs.examples,
             f"SFT on {'file ' + cs.dataset if cs.dataset else 'generated cold-start examples'}"))
    add(_grpo("r1-pipeline", "reasoning_rl", recipe.reasoning_rl, available))
    rs = recipe.rejection_sampling
    rs_prompts = _limit(rs.prompts, available) or rs.prompts
    add(StagePlan("r1-pipeline", "rejection_sampling", f"sample {rs.samples_per_prompt} per prompt at T={rs.temperature},"
                  f" keep verified (batched by {rs.batch_size})", None, 1, rs_prompts,
                  rs_prompts * rs.samples_per_prompt, rs_prompts * rs.samples_per_prompt * rs.max_new_tokens))
    add(_sft("r1-pipeline", "sft", recipe.sft, None, "SFT on the rejection-sampled + general rows"))
    rm = recipe.reward_model
    add(StagePlan("r1-pipeline", "reward_model", f"RewardTrainer on {rm.pairs} preference pairs", rm.steps, 1, rm.pairs))
    asr = recipe.all_scenario_rl
    row = _grpo("r1-pipeline", "all_scenario_rl", asr, available, "GRPO + guard")
    checks = asr.steps // asr.guard.every + 2  # at the start, every N steps, at the end
    guard = checks * asr.guard.prompts
    add(StagePlan(row.flow, row.stage, row.what, row.steps, row.processes, row.prompts,
                  row.generations + guard, row.max_tokens + guard * asr.max_completion_length))
    add(StagePlan("r1-pipeline", "merged", "merge the final adapter into the base"))
    ev = recipe.eval
    ev_prompts = min(ev.prompts or heldout, heldout)
    per_model = ev_prompts * (ev.samples + 1)  # k samples + one greedy per prompt
    add(StagePlan("r1-pipeline", f"eval x{len(evaluated)}", f"pass@1/cons@{ev.samples} at T={ev.temperature} + greedy "
                  f"({', '.join(evaluated)})", None, 1, ev_prompts, per_model * len(evaluated),
                  per_model * len(evaluated) * ev.max_new_tokens))
    add(_grpo("r1-zero", "r1_zero", recipe.r1_zero, available, "GRPO from the base"))
    d = recipe.distill
    student = (f"pocket student ({d.student.hidden_size}d x {d.student.num_layers} layers)"
               if d.student_model == "pocket" else d.student_model)
    add(_sft("distill", "student_distilled", d.sft, None, f"SFT {student} on the rejection-sampled rows"))
    add(_grpo("distill", "student_rl", d.rl, available, "GRPO, RL only"))
    return plan


def _num(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def format_plan(plan: Plan) -> str:
    """The plan as a readable table with totals and notes."""
    r = plan.recipe
    lines = [f"recipe {r.name} ({plan.source}): valid",
             f"model {r.model.base}, dtype {r.model.dtype}, LoRA r={r.model.lora.r} alpha={r.model.lora.alpha} "
             f"on {r.model.lora.target_modules}",
             f"data: {len(r.data.sources)} source(s), {_num(train_prompts(r)) if train_prompts(r) is not None else 'all'}"
             f" training prompts after {r.data.heldout_size} held out; language {r.data.language}", ""]
    header = ("flow", "stage", "steps", "procs", "prompts", "generations", "gen tokens (max)", "what")
    rows = [(s.flow, s.stage, _num(s.steps), str(s.processes), _num(s.prompts), _num(s.generations),
             _num(s.max_tokens), s.what) for s in plan.stages]
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header) - 1)]
    for cells in [header, tuple("-" * w for w in widths) + ("-" * 4,), *rows]:
        lines.append("  ".join(f"{c:<{widths[i]}}" if i < 2 else f"{c:>{widths[i]}}" if i < len(widths) else c
                               for i, c in enumerate(cells)))
    gens, tokens = plan.total("r1-pipeline")
    all_gens, all_tokens = plan.total()
    lines += ["", f"r1-pipeline: {gens:,} generations, at most {tokens:,} generated tokens; "
              f"with r1-zero and distill: {all_gens:,} / {all_tokens:,}"]
    if plan.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in plan.notes]
    return "\n".join(lines)


def dry_run(path: str, overrides: list[str] | None = None) -> str:
    """Load, validate and plan a recipe file; the printable plan (RecipeError when it cannot run)."""
    from core.config import load_recipe

    recipe = load_recipe(path, overrides)
    return format_plan(build_plan(recipe, str(path)))
