"""Dry run: validate a recipe against what is installed and print its plan, without loading weights.

The plan is a table of every flow's stages, in the stage graph's order (stages/graph.py; a stage
two flows share is listed under the first): optimizer steps, processes, training prompts,
completions generated and an upper bound on generated tokens (every completion at its length
limit), then one evaluation row per flow. What a row says follows from the stage's recipe section.
Problems that would stop a run are errors, raised together with the file and key of each
(stages/preflight.py); things to fix before a stage runs (a missing data file) are notes.

    r1 dry-run --recipe configs/qwen2.5-0.5b-instruct-gsm8k.yaml
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.config import (
    STRESS_SPLITS,
    ColdStartConfig,
    GRPOStageConfig,
    HubSource,
    ReasoningGymSource,
    Recipe,
    RejectionSamplingConfig,
    SFTStageConfig,
    load_recipe,
)
from core.distributed import should_launch_python, worker_python
from core.stage import StageSpec, setting
from stages import graph
from stages.preflight import TRAINING, sections, validate


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


# --- the plan ----------------------------------------------------------------------------------


def train_prompts(recipe: Recipe) -> int | None:
    """Training prompts after the test and validation splits, when every source's size is known."""
    sizes = []
    for src in recipe.data.sources:
        if isinstance(src, ReasoningGymSource):
            sizes.append(src.size)
        elif isinstance(src, HubSource) and src.limit:
            sizes.append(src.limit)
        else:
            return None
    held = recipe.data.test_size + (recipe.data.validation_size or min(200, sum(sizes) // 10))
    return max(0, sum(sizes) - held)


def _limit(n: int | None, available: int | None) -> int | None:
    if n is None:
        return available
    return n if available is None else min(n, available)


def _grpo(flow: str, stage: str, cfg: GRPOStageConfig, available: int | None, what: str) -> StagePlan:
    # TRL: every optimizer step consumes per-device batch x accumulation x processes completions,
    # num_generations of them per prompt.
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * cfg.num_processes
    generations = cfg.steps * per_step
    rollout = "vLLM" if cfg.use_vllm else "HF generate"
    row = StagePlan(flow, stage, f"{what} ({rollout}, {per_step // cfg.num_generations} prompts x "
                    f"{cfg.num_generations} per step)", cfg.steps, cfg.num_processes,
                    _limit(cfg.prompts, available), generations, generations * cfg.max_completion_length)
    if cfg.guard is None:
        return row
    checks = cfg.steps // cfg.guard.every + 2  # the guard: at the start, every N steps, at the end
    guard = checks * cfg.guard.prompts
    return StagePlan(row.flow, row.stage, row.what, row.steps, row.processes, row.prompts,
                     row.generations + guard, row.max_tokens + guard * cfg.max_completion_length)


def _sft(flow: str, stage: str, cfg: SFTStageConfig, what: str, recipe: Recipe) -> StagePlan:
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * cfg.num_processes
    cold_start = cfg is recipe.cold_start
    examples = cfg.examples if cold_start and not cfg.dataset else None
    source = f" (cold-start source: {cfg.source})" if cold_start else ""
    return StagePlan(flow, stage, f"{what}{source} ({per_step} sequences per step)", cfg.steps, cfg.num_processes,
                     examples)


def _base(flow: str, spec: StageSpec, recipe: Recipe) -> StagePlan:
    cfg = setting(recipe, spec.section)
    model_path = next(setting(recipe, u) for u in spec.uses if u in ("model.base", "distill.student_model"))
    if model_path != "pocket":
        return StagePlan(flow, spec.name, f"use {model_path}")
    return StagePlan(flow, spec.name, f"{spec.doc}: pretrain a pocket model ({cfg.hidden_size}d x {cfg.num_layers} "
                     f"layers) on {cfg.corpus_documents} documents", cfg.steps)


def _collect(flow: str, stage: str, cfg: ColdStartConfig, available: int | None, what: str) -> StagePlan:
    if cfg.source == "file":
        return StagePlan(flow, stage, f"{what}: read {cfg.dataset}")
    if cfg.source == "generated":
        return StagePlan(flow, stage, f"{what}: generate {cfg.examples} worked solutions (pocket world)", None, 1,
                         cfg.examples)
    c = cfg.collect
    model = "the base with few-shot exemplars" if cfg.source == "few_shot" else \
        f"R1-Zero ({'run ' + c.r1_zero_run if c.r1_zero_run else 'this run'})"
    prompts = _limit(c.prompts, available) or c.prompts
    generations = prompts * c.samples_per_prompt
    return StagePlan(flow, stage, f"{what}: sample {model}, k={c.samples_per_prompt} at T={c.temperature}, keep "
                     f"<= {cfg.examples}", None, 1, prompts, generations, generations * c.max_new_tokens)


def _sample(flow: str, stage: str, cfg: RejectionSamplingConfig, available: int | None, what: str) -> StagePlan:
    prompts = _limit(cfg.prompts, available) or cfg.prompts
    generations = prompts * cfg.samples_per_prompt
    return StagePlan(flow, stage, f"{what} (k={cfg.samples_per_prompt} at T={cfg.temperature}, batched by "
                     f"{cfg.batch_size})", None, 1, prompts, generations, generations * cfg.max_new_tokens)


# How each kind of stage (StageSpec.kind) is planned; a kind not listed is one row with its doc.
PLANNERS: dict[str, Callable[[str, StageSpec, Recipe, int | None], StagePlan]] = {
    "grpo": lambda flow, spec, recipe, available: _grpo(flow, spec.name, setting(recipe, spec.section), available,
                                                        spec.doc),
    "sft": lambda flow, spec, recipe, available: _sft(flow, spec.name, setting(recipe, spec.section), spec.doc, recipe),
    "cold_start_data": lambda flow, spec, recipe, available: _collect(flow, spec.name, recipe.cold_start, available,
                                                                      spec.doc),
    "rejection_sampling": lambda flow, spec, recipe, available: _sample(flow, spec.name, setting(recipe, spec.section),
                                                                        available, spec.doc),
    "reward_model": lambda flow, spec, recipe, available: StagePlan(
        flow, spec.name, f"{spec.doc} (RewardTrainer on {recipe.reward_model.pairs} preference pairs)",
        recipe.reward_model.steps, 1, recipe.reward_model.pairs),
    "base": lambda flow, spec, recipe, available: _base(flow, spec, recipe),
}


def stage_plan(flow: str, spec: StageSpec, recipe: Recipe, available: int | None) -> StagePlan:
    """One row: what the stage does (its doc), with the figures its kind reads from its recipe section."""
    planner = PLANNERS.get(spec.kind)
    return planner(flow, spec, recipe, available) if planner else StagePlan(flow, spec.name, spec.doc)


def eval_plan(flow: str, evaluated: list[str], recipe: Recipe) -> StagePlan:
    ev, test = recipe.eval, recipe.data.test_size
    prompts = min(ev.prompts or test, test)
    per_model = prompts * (ev.samples + 1)  # k samples + one greedy per prompt
    return StagePlan(flow, f"eval x{len(evaluated)}", f"pass@1/cons@{ev.samples} at T={ev.temperature} + greedy "
                     f"({', '.join(evaluated)})", None, 1, prompts, per_model * len(evaluated),
                     per_model * len(evaluated) * ev.max_new_tokens)


def build_plan(recipe: Recipe, source: str = "<recipe>") -> Plan:
    """Validate `recipe` and lay out what each flow's stages will do (no model or dataset is loaded)."""
    plan = Plan(recipe, source, notes=validate(recipe, source))
    available = train_prompts(recipe)
    listed: set[str] = set()
    for flow in graph.FLOWS.values():
        for spec in graph.flow_stages(flow, recipe):
            if spec.name not in listed:
                listed.add(spec.name)
                plan.stages.append(stage_plan(flow.name, spec, recipe, available))
        plan.stages.append(eval_plan(flow.name, graph.flow_evaluations(flow, recipe), recipe))
    return plan


def device_lines(recipe: Recipe) -> list[str]:
    """Where the stages will run: the GPUs visible here and how stages use them."""
    import torch  # preflight has loaded it already

    procs = {k: c.num_processes for k, c in sections(recipe, *TRAINING).items() if c.num_processes > 1}
    if not torch.cuda.is_available():
        where = "devices: no CUDA GPU here; every stage would run on the CPU"
    else:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        where = (f"devices: {torch.cuda.device_count()} GPU(s) here ({names}); every single-process stage runs in "
                 "a process of its own on the first one")
    several = ", ".join(f"{k} x{n}" for k, n in procs.items()) or "none"
    d = recipe.distributed
    python = worker_python(d)
    machines = (f"{d.num_machines} machines (rendezvous {d.rdzv_backend} at {d.main_process_ip}:{d.main_process_port}, "
                f"gang job: {d.submit})" if d.num_machines > 1 else "one machine")
    return [where, f"  stages over several processes (accelerate launch, one GPU each): {several}, on {machines}",
            f"  training processes run {python}" + (" (another environment: every training stage goes through "
                                                     "the launched worker)" if should_launch_python(python) else "")]


def memory_lines(recipe: Recipe) -> list[str]:
    """The memory settings of the stages that use vLLM or train long sequences."""
    lines = ["memory:"]
    for key, cfg in sections(recipe, "grpo").items():
        vllm = (f"vLLM {cfg.vllm_mode} share {cfg.vllm_gpu_memory_utilization}, max model length "
                f"{cfg.vllm_max_model_length or 'the model default'}") if cfg.use_vllm else "HF generate"
        if cfg.use_vllm and cfg.vllm_mode == "server":
            s = cfg.vllm_server
            vllm = (f"vLLM server at {s.url} (weight-update group port {s.group_port}, waits {s.timeout:g} s "
                    "for it; see the notes for whether it answers)")
        lines.append(f"  {key}: gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}, "
                     f"bf16 {'on' if cfg.bf16 else 'off'}, {vllm}")
    for key, cfg in sections(recipe, "sft").items():
        lines.append(f"  {key}: gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}, "
                     f"bf16 {'on' if cfg.bf16 else 'off'}, max length {cfg.max_length}")
    rs = recipe.rejection_sampling
    lines.append("  rejection_sampling: " + (f"vLLM share {rs.vllm_gpu_memory_utilization}, max model length "
                 f"{rs.vllm_max_model_length or 'the model default'}" if rs.use_vllm else
                 f"HF generate, batches of {rs.batch_size}"))
    return lines


def reward_model_lines(recipe: Recipe) -> list[str]:
    """What the reward model trains on and which stage-4 rewards use it."""
    rm, prefs = recipe.reward_model, recipe.reward_model.dataset
    if prefs is None:
        data = "pairs generated from the pocket world's general tasks"
    else:
        cols = prefs.columns
        where = prefs.path if prefs.kind == "file" else f"hub {prefs.name} ({prefs.subset or 'default'}/{prefs.split})"
        data = (f"{where}, columns prompt={cols.prompt or '(shared opening)'} chosen={cols.chosen} "
                f"rejected={cols.rejected}")
    rewards = ", ".join(f"{r.name}" + (f" [{r.rows}]" if r.rows != "all" else "") for r in recipe.all_scenario_rl.rewards)
    return [f"reward model: {rm.pairs} pairs from {data}; use_lora {rm.use_lora}, bf16 {'on' if rm.bf16 else 'off'}, "
            f"gradient checkpointing {'on' if rm.gradient_checkpointing else 'off'}, max length {rm.max_length}",
            f"  all_scenario_rl rewards: {rewards}",
            f"stop token: {recipe.model.eos_token or 'the chat template end-of-turn token (else the tokenizer EOS)'}"]


def _num(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def format_plan(plan: Plan) -> str:
    """The plan as a readable table with totals and notes."""
    r = plan.recipe
    lines = [f"recipe {r.name} ({plan.source}): valid",
             f"model {r.model.base}, dtype {r.model.dtype}, LoRA r={r.model.lora.r} alpha={r.model.lora.alpha} "
             f"on {r.model.lora.target_modules}",
             f"data: {len(r.data.sources)} source(s), {_num(train_prompts(r)) if train_prompts(r) is not None else 'all'}"
             f" training prompts after {r.data.test_size} test and {r.data.validation_size or 'a tenth (<= 200)'} "
             f"validation prompts; stress splits: {', '.join(s for s in STRESS_SPLITS if getattr(r.data, s)) or 'none'}; "
             f"language {r.data.language}",
             *device_lines(r), *memory_lines(r), *reward_model_lines(r), ""]
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
    recipe = load_recipe(path, overrides)
    return format_plan(build_plan(recipe, str(path)))
