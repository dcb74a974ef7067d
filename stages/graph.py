"""The stage graph, declared once: every stage, what runs it, what it reads and what it makes, and
the flows that chain them. Flows, the plan, the report, the benchmarks and the tests derive from
this table; nothing else lists stage names.

    task_data -> base -> cold_start_data -> cold_start -> reasoning_rl -> rejection_sampling -> sft -> all_scenario_rl -> merged
                   |       ^ (source r1_zero)                             |      reward_model --^
                   +-> r1_zero                                                +-> student_distilled
    task_data -> student_base --------------------------------+-> student_rl

A row's `section` is its own recipe section (what the stage reads as `call.cfg`); `uses` lists
every other recipe setting it reads. Both go into the stage's cache key (core/stage.py), and the
stage can read nothing else of the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.stage import StageSpec
from stages import (
    base,
    cold_start_data,
    evaluation,
    general,
    grpo,
    merged,
    rejection_sampling,
    reward_model,
    sft,
    task_data,
)

TASK_DATA, BASE = "task_data", "base"
TEMPLATE, LANGUAGE, SEED = "data.template", "data.language", "seed"
# what a stage that trains (or samples) the LoRA adapter uses of the model
LORA_TRAINING = ("model.dtype", "model.lora", "model.eos_token")


def collects_from_r1_zero(recipe: Any) -> bool:
    """The cold start is collected from this run's R1-Zero adapter (not a given run's)."""
    return recipe.cold_start.source == "r1_zero" and not recipe.cold_start.collect.r1_zero_run


STAGES: tuple[StageSpec, ...] = (
    StageSpec(TASK_DATA, task_data.run, "load the task sources, split train / validation / test (+ stress splits)",
              section="data", uses=(SEED,), output="dataset", retries=1),
    StageSpec(BASE, base.run, "the base model: the pocket world's, pretrained once and cached, or a user's",
              inputs={"task_data": TASK_DATA}, section="model.pocket", uses=("model.base", TEMPLATE, SEED),
              output="base_model", evaluated=True),
    StageSpec("r1_zero", grpo.run, "R1-Zero: GRPO of a fresh adapter straight on the base (accuracy, format)",
              inputs={"task_data": TASK_DATA, "base": BASE}, section="r1_zero",
              uses=(TEMPLATE, SEED, *LORA_TRAINING), evaluated=True),
    StageSpec("cold_start_data", cold_start_data.run,
              "stage 1a: the cold-start set (cold_start.source)",
              inputs={"task_data": TASK_DATA, "base": BASE, "r1_zero": "r1_zero"},
              when={"r1_zero": collects_from_r1_zero}, section="cold_start.collect",
              uses=("cold_start.source", "cold_start.examples", "cold_start.dataset", "model.base", TEMPLATE, LANGUAGE,
                    SEED, *LORA_TRAINING), output="dataset"),
    StageSpec("cold_start", sft.run, "stage 1b: SFT of a fresh adapter on the cold-start set",
              inputs={"base": BASE, "dataset": "cold_start_data"}, section="cold_start",
              uses=(SEED, *LORA_TRAINING), evaluated=True),
    StageSpec("reasoning_rl", grpo.run, "stage 2: GRPO on verifiable prompts (accuracy, format, language)",
              inputs={"task_data": TASK_DATA, "base": BASE, "adapter": "cold_start"}, section="reasoning_rl",
              uses=(TEMPLATE, SEED, *LORA_TRAINING), evaluated=True),
    StageSpec("rejection_sampling", rejection_sampling.run,
              "stage 3a: sample k per prompt, keep the verified single-language ones, mix in general rows",
              inputs={"task_data": TASK_DATA, "base": BASE, "adapter": "reasoning_rl"}, section="rejection_sampling",
              uses=(TEMPLATE, LANGUAGE, SEED, *LORA_TRAINING, *general.SETTINGS), output="dataset"),
    StageSpec("sft", sft.run, "stage 3b: SFT on the rejection-sampled dataset",
              inputs={"base": BASE, "dataset": "rejection_sampling", "adapter": "reasoning_rl"}, section="sft",
              uses=(SEED, *LORA_TRAINING), evaluated=True),
    StageSpec("reward_model", reward_model.run, "a reward model (sequence classifier) for prompts without a verifier",
              inputs={"base": BASE}, section="reward_model", uses=("model.lora",), output="model"),
    StageSpec("all_scenario_rl", grpo.run,
              "stage 4: GRPO on mixed prompts, rule rewards + the reward model, reward-hacking guard",
              inputs={"task_data": TASK_DATA, "base": BASE, "adapter": "sft", "reward_model": "reward_model"},
              section="all_scenario_rl", uses=(TEMPLATE, SEED, *LORA_TRAINING, *general.SETTINGS), evaluated=True),
    StageSpec("merged", merged.run, "the final adapter merged into the base: a plain HF model directory",
              inputs={"base": BASE, "adapter": "all_scenario_rl"}, uses=("model.dtype", "model.eos_token"), output="model"),
    StageSpec("student_base", base.run_student, "the smaller student: a pocket base built like the base, or a user's",
              inputs={"task_data": TASK_DATA}, section="distill.student", uses=("distill.student_model", TEMPLATE, SEED),
              output="base_model", evaluated=True),
    StageSpec("student_distilled", sft.run, "distillation: SFT of the student on the teacher's rejection-sampled data",
              inputs={"base": "student_base", "dataset": "rejection_sampling"}, section="distill.sft",
              uses=(SEED, *LORA_TRAINING), evaluated=True),
    StageSpec("student_rl", grpo.run, "the same student trained by GRPO alone (the comparison)",
              inputs={"task_data": TASK_DATA, "base": "student_base"}, section="distill.rl",
              uses=(TEMPLATE, SEED, *LORA_TRAINING), evaluated=True),
)
BY_NAME = {s.name: s for s in STAGES}
EVALUATED = tuple(s.name for s in STAGES if s.evaluated)  # in the graph's order


@dataclass(frozen=True)
class Flow:
    """A flow builds its targets and every stage they need, then evaluates the evaluated stages built
    on its base model. The Prefect flow (flows/training.py), the CLI command and prefect.yaml's
    deployments are made from this list."""

    name: str  # the Prefect flow's name
    command: str  # `r1 <command>`
    targets: tuple[str, ...]
    base: str
    doc: str

    @property
    def entrypoint(self) -> str:
        """The flow function's name in flows/training.py (prefect.yaml: flows/training.py:<entrypoint>)."""
        return self.name.replace("-", "_")


FLOWS = {f.name: f for f in (
    Flow("r1-pipeline", "pipeline", ("merged",), BASE,
         "DeepSeek-R1's four stages (the paper's Figure 2), every stage evaluated, the final adapter merged"),
    Flow("r1-zero", "r1-zero", ("r1_zero",), BASE, "R1-Zero: GRPO from the base, no SFT, evaluated against the base"),
    Flow("distill", "distill", ("student_distilled", "student_rl"), "student_base",
         "the teacher's rejection-sampled data distilled into a smaller student, against the same student by RL alone"),
)}


def needed(targets: tuple[str, ...] | list[str], recipe: Any = None) -> list[StageSpec]:
    """The target stages and every stage they read from with this recipe (None: those they read
    from with any recipe), in the table's (dependency) order."""
    todo, found = list(targets), set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += list(BY_NAME[name].inputs_for(recipe).values())
    return [s for s in STAGES if s.name in found]


def model_base(name: str) -> str:
    """The base model a stage's model is built on (a base model stage is its own)."""
    spec = BY_NAME[name]
    return name if spec.output == "base_model" else model_base(spec.inputs["base"])


def built_on(base_name: str) -> list[StageSpec]:
    """The stages that read the base model `base_name`, directly or through an input built on it."""
    return [s for s in STAGES if "base" in s.inputs and model_base(s.inputs["base"]) == base_name]


def evaluated_on(base_name: str, stages: list[StageSpec] | None = None) -> list[str]:
    """The evaluated stages (of `stages`, default all) whose model is built on `base_name`."""
    return [s.name for s in (STAGES if stages is None else stages) if s.evaluated and model_base(s.name) == base_name]


def flow_stages(flow: Flow, recipe: Any = None) -> list[StageSpec]:
    """What a flow runs with this recipe (None: what it runs with any recipe), in order."""
    return needed(flow.targets, recipe)


def flow_evaluations(flow: Flow, recipe: Any = None) -> list[str]:
    """The stages a flow evaluates, in order."""
    return evaluated_on(flow.base, flow_stages(flow, recipe))


def evaluation_spec(name: str, base_stage: str = BASE, adapter_stage: str | None = None) -> StageSpec:
    """The evaluation (test split, stress splits) of a model named `name`: the `base` input, with the `adapter` input
    applied when there is one. For a stage of the graph use `evaluation_of`."""
    inputs = {"task_data": TASK_DATA, "base": base_stage} | ({"adapter": adapter_stage} if adapter_stage else {})
    return StageSpec(evaluation.stage_name(name), evaluation.run, f"evaluation of {name} on the test split", inputs=inputs,
                     section="eval", uses=(TEMPLATE, LANGUAGE, SEED, "model.dtype", "model.eos_token"), output="eval", retries=1)


def evaluation_of(name: str) -> StageSpec:
    """The evaluation of a stage's model: its adapter on its base, or the base itself."""
    adapter = name if BY_NAME[name].output == "adapter" else None
    return evaluation_spec(name, model_base(name), adapter)


def spec(name: str) -> StageSpec:
    """The declaration of a stage of the graph or of the evaluation of one."""
    evaluated = evaluation.evaluated_name(name)
    if evaluated in BY_NAME:
        return evaluation_of(evaluated)
    if name not in BY_NAME:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(BY_NAME)} and eval_<stage>")
    return BY_NAME[name]
