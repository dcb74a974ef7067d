"""Recipes: YAML files in configs/ loaded into typed, validated config objects.

Every section forbids unknown keys, so a typo or a key a library no longer has fails at load time
with the file, the dotted key and what was expected, never halfway through a training run.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)


class RecipeError(ValueError):
    """A recipe (or an override) that cannot be used; the message names file, key and expectation."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the pocket world ------------------------------------------------------------------------


class CorpusMix(Section):
    """Relative weights of the solution styles in the pocket pretraining corpus."""

    direct: float = Field(0.75, ge=0, description="answer at once, no written work (often wrong on long items)")
    steps: float = Field(0.15, ge=0, description="forward work in the first language")
    second_language: float = Field(0.05, ge=0, description="forward work written wholly in the second language")
    mixed_language: float = Field(0.05, ge=0, description="forward work that switches language midway")

    @model_validator(mode="after")
    def _some_weight(self) -> CorpusMix:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one corpus style needs a positive weight")
        return self


class PocketConfig(Section):
    """The embedded base model: a tiny Qwen2 pretrained from scratch on a generated corpus."""

    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(4, gt=0)
    num_kv_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(384, gt=0)
    max_position_embeddings: int = Field(256, gt=0)
    min_terms: int = Field(2, ge=2, description="shortest chain in the corpus")
    max_terms: int = Field(6, ge=2, description="longest chain in the corpus")
    vocab_size: int = Field(384, ge=300, description="BPE vocabulary size (bytes + merges + chat tokens)")
    corpus_documents: int = Field(60_000, gt=0)
    steps: int = Field(1000, gt=0)
    batch_size: int = Field(32, gt=0)
    block_size: int = Field(128, gt=8, description="tokens per packed training window")
    learning_rate: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(100, ge=0)
    autocast: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="the pretraining loop's compute dtype (CPU autocast; the weights stay float32). auto: "
        "bfloat16 only on a CPU with native bfloat16 where a short probe of these shapes runs clearly faster in it "
        "(core/machine.py), else float32; the choice is part of the base's key")
    direct_error_rate: float = Field(
        1.0, ge=0, le=1, description="chance that a direct answer to the longest chain is off by a little "
        "(shorter chains: proportionally less)"
    )
    slip_rate: float = Field(0.15, ge=0, le=1, description="chance that a line of the web's forward work is off "
                             "by one or two (the slip carries on)")
    copy_slip_rate: float = Field(0.10, ge=0, le=1, description="chance that forward work miscopies one term")
    check_rate: float = Field(0.30, ge=0, le=1, description="share of written solutions that end with a check "
                              "(the reduction redone carefully from the prompt: catches and repairs slips)")
    practice_max_terms: int = Field(7, ge=2, description="longest chain in practice documents (the skill may "
                                    "reach further than the task's solutions do)")
    practice_documents: int = Field(60_000, ge=0, description="documents under other prompts practising the "
                                    "careful reduction alone and whole checked solutions (in turn, `practice_kinds`)")
    practice_kinds: list[Literal["reduce", "check"]] = Field(
        default_factory=lambda: ["reduce", "check"], min_length=1,
        description="what practice documents practise, in turn: the careful reduction alone (reduce), whole "
        "worked solutions ending in a check (check); [reduce] leaves every check out of the corpus (with "
        "check_rate 0)")
    second_language: Literal["fr"] = "fr"
    mix: CorpusMix = CorpusMix()
    seed: int | None = Field(None, description="the corpus's draws and the initialisation; default: the recipe's "
                             "seed")

    @model_validator(mode="after")
    def _heads_divide(self) -> PocketConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}")
        return self


class LoraSettings(Section):
    """The LoRA adapter every training stage trains (peft.LoraConfig is built from these)."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class ModelConfig(Section):
    base: str = Field("pocket", description="'pocket' (build the embedded base) or an HF model path / hub name")
    pocket: PocketConfig = PocketConfig()
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    lora: LoraSettings = LoraSettings()
    eos_token: str | None = Field(
        None, description="the token that ends a completion for every sampler and trainer; default: the chat "
        "template's end-of-turn token (<|im_end|> for ChatML), else the tokenizer's EOS")


# --- task data -----------------------------------------------------------------------------


class ColumnMap(Section):
    """Which columns of a file or hub dataset hold the prompt and the gold answer."""

    prompt: str = "prompt"
    answer: str = "answer"


AnswerFormat = Literal["plain", "gsm8k", "boxed"]


class ReasoningGymSource(Section):
    kind: Literal["reasoning_gym"]
    name: str = Field(description="a reasoning-gym dataset name, e.g. chain_sum")
    size: int = Field(gt=0)
    config: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the task's config")


class FileSource(Section):
    kind: Literal["file"]
    path: str = Field(description="a .jsonl, .json, .csv or .parquet file")
    task: str | None = Field(None, description="task name for the rows (default: the file's stem)")
    columns: ColumnMap = ColumnMap()
    answer_format: AnswerFormat = "plain"
    on_bad_row: Literal["stop", "skip"] = "stop"


class HubSource(Section):
    kind: Literal["hub"]
    name: str = Field(description="a `datasets` name, e.g. openai/gsm8k")
    subset: str | None = None
    split: str = "train"
    task: str | None = None
    columns: ColumnMap = ColumnMap()
    answer_format: AnswerFormat = "plain"
    limit: int | None = Field(None, gt=0)
    # a hub dataset is not ours to fix: a row without a readable answer is dropped and counted
    on_bad_row: Literal["stop", "skip"] = "skip"


SourceConfig = Annotated[ReasoningGymSource | FileSource | HubSource, Field(discriminator="kind")]

R1_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>."
)


class TemplateConfig(Section):
    """How a task prompt becomes a chat conversation (the paper's instruction template)."""

    system: str | None = Field(R1_SYSTEM, description="system message; null for none")
    instruction: str = Field("{prompt}", description="user message; must contain {prompt}")

    @model_validator(mode="after")
    def _has_prompt(self) -> TemplateConfig:
        if "{prompt}" not in self.instruction:
            raise ValueError("instruction must contain the placeholder {prompt}")
        return self


STRESS_SPLITS = ("transfer", "longer")


class DataConfig(Section):
    """The task data and its splits: train; validation (everything that selects or stops reads it:
    the reward-hacking guard, held-out probes, the base's report, any tuning); test (the tables read
    only it); and optional stress splits, never trained on: `transfer` (lengths the world practises
    but the task never asks) and `longer` (beyond every training document). No prompt (chain) of the
    last four occurs in training data or in any pocket corpus document."""

    sources: list[SourceConfig] = Field(min_length=1)
    test_size: int = Field(200, gt=0, description="prompts held out for the evaluation tables")
    validation_size: int | None = Field(
        None, gt=0, description="prompts held out for whatever selects or stops (guards, probes, tuning); default: "
        "a tenth of the distinct prompts, at most 200, carved from the training pool")
    transfer: list[SourceConfig] = Field(
        default_factory=list, description="stress split: items of lengths the world practises but the task never "
        "asks (never trained on), evaluated apart")
    longer: list[SourceConfig] = Field(
        default_factory=list, description="stress split: items longer than any training document (never trained "
        "on), evaluated apart: does the reasoning generalise in length?")
    seed: int | None = Field(None, description="the draws of the sources and the split; default: the recipe's seed "
                             "(a seed varies the world); set it to pin the world and vary only training")
    language: str = Field("en", description="target language of the chain of thought")
    template: TemplateConfig = TemplateConfig()


# --- rewards -------------------------------------------------------------------------------


class RewardSpec(Section):
    """One reward function of a stage: its registry name, weight, keyword parameters, and the rows
    it judges (the others score None, "cannot judge", which TRL leaves out of the sum)."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)
    rows: Literal["all", "verifiable", "general"] = Field(
        "all", description="judge every row, only rows with a verifier, or only general rows")


class PreferenceColumns(Section):
    """Which columns hold a preference pair. Without a prompt column, `chosen` and `rejected` are
    whole conversations whose shared opening is the prompt (TRL's implicit-prompt format)."""

    prompt: str | None = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"


class PreferenceSource(Section):
    """Preference pairs for the reward model: a local file or a `datasets` hub dataset."""

    kind: Literal["file", "hub"]
    path: str | None = Field(None, description="kind file: a .jsonl, .json or .parquet file")
    name: str | None = Field(None, description="kind hub: a `datasets` name, e.g. trl-lib/ultrafeedback_binarized")
    subset: str | None = None
    split: str = "train"
    columns: PreferenceColumns = PreferenceColumns()

    @model_validator(mode="after")
    def _where(self) -> PreferenceSource:
        if (self.kind == "file") != (self.path is not None) or (self.kind == "hub") != (self.name is not None):
            raise ValueError("a file source needs `path` (and no `name`), a hub source `name` (and no `path`)")
        return self


# --- training stages -------------------------------------------------------------------------


# Settings a trainer's TRL config takes from the project, never from a recipe: where it writes, what
# it reports to, the device, the seed, checkpointing (the run store resumes from it) and the reward
# weights (the stage's `rewards`).
MANAGED_TRL_FIELDS = frozenset({"output_dir", "overwrite_output_dir", "report_to", "use_cpu", "seed", "data_seed",
                                "save_strategy", "reward_weights", "completion_only_loss", "eos_token"})


def trl_config_class(name: str) -> type:
    """TRL's config dataclass by name (imported here: trl takes seconds to import)."""
    import trl

    return getattr(trl, name)


class TrainConfig(Section):
    """What every trainer of ours shares. The fields below are the ones users set most, under our
    names (`TRL_NAMES` maps them to the TRL config's); any other field of the trainer's TRL config
    goes in `trl`, passed as is, checked against that class when the recipe loads."""

    TRL_CONFIG: ClassVar[str] = "SFTConfig"  # the TRL config class this section's trainer takes
    TRL_SET_ELSEWHERE: ClassVar[dict[str, str]] = {}  # TRL field -> the sub-section key that sets it
    TRL_NAMES: ClassVar[dict[str, str]] = {  # our field -> the TRL config's field it sets
        "steps": "max_steps", "learning_rate": "learning_rate", "batch_size": "per_device_train_batch_size",
        "gradient_accumulation_steps": "gradient_accumulation_steps", "warmup_steps": "warmup_steps",
        "logging_steps": "logging_steps", "save_steps": "save_steps", "save_total_limit": "save_total_limit",
        "bf16": "bf16", "gradient_checkpointing": "gradient_checkpointing"}

    steps: int = Field(100, gt=0, description="optimizer steps (TRL max_steps)")
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, gt=0, description="per-device train batch size (completions for GRPO)")
    gradient_accumulation_steps: int = Field(1, gt=0)
    warmup_steps: int = Field(0, ge=0)
    logging_steps: int = Field(1, gt=0)
    save_steps: int = Field(50, gt=0, description="trainer checkpoint every N steps (to resume a killed stage)")
    save_total_limit: int = Field(2, gt=0, description="keep at most the last N checkpoints")
    bf16: bool = Field(False, description="bf16 mixed precision (GPU); fp32 measured faster for the pocket model on CPU")
    num_processes: int = Field(1, gt=0, description="processes for `accelerate launch` (DDP)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less GPU memory for long sequences, ~30% "
        "more time (off for the tiny pocket model)")
    trl: dict[str, Any] = Field(
        default_factory=dict, description="any other field of the trainer's TRL config (TRL_CONFIG), e.g. "
        "{num_iterations: 2, mask_truncated_completions: true}; checked against the class when the recipe loads")

    @field_validator("trl")
    @classmethod
    def _trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return value
        import dataclasses

        known = {f.name for f in dataclasses.fields(trl_config_class(cls.TRL_CONFIG))}
        ours = {trl_name: field for field, trl_name in cls.TRL_NAMES.items()} | cls.TRL_SET_ELSEWHERE
        for key in value:
            if key in ours:
                raise ValueError(f"'{key}' is this section's `{ours[key]}`; set that instead")
            if key in MANAGED_TRL_FIELDS:
                raise ValueError(f"'{key}' is set by the project (where it writes, reports, resumes, rewards), "
                                 "not by a recipe")
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                raise ValueError(f"'{key}' is not a field of TRL's {cls.TRL_CONFIG}" +
                                 (f" (did you mean '{hint[0]}'?)" if hint else ""))
        return value

    def trl_args(self) -> dict[str, Any]:
        """This section's settings under TRL's names, the `trl` mapping included (what a trainer
        passes to TRL's config besides what the project manages)."""
        return {trl_name: getattr(self, field) for field, trl_name in self.TRL_NAMES.items()} | self.trl


class RewardModelConfig(TrainConfig):
    """The trained reward model (TRL RewardTrainer) used for prompts that have no verifier; it trains
    and checkpoints like the other stages (core/trainers.py), in one process."""

    TRL_CONFIG: ClassVar[str] = "RewardConfig"
    TRL_NAMES: ClassVar[dict[str, str]] = {**TrainConfig.TRL_NAMES, "max_length": "max_length"}

    dataset: PreferenceSource | None = Field(
        None, description="preference pairs to train on (real recipes); default: pairs generated from the pocket "
        "world's general tasks")
    pairs: int = Field(2000, gt=0, description="training pairs (generated, or the first of the shuffled dataset)")
    heldout_pairs: int = Field(200, gt=0)
    steps: int = Field(300, gt=0, description="optimizer steps (TRL max_steps)")
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    warmup_steps: int | None = Field(None, ge=0, description="default: a tenth of the steps, at most 20")
    seed: int = 0
    max_length: int = Field(256, gt=0, description="longest pair in tokens; longer pairs are dropped (TRL filters)")
    use_lora: Literal["auto", "always", "never"] = Field(
        "auto", description="LoRA (model.lora settings) instead of a full fine-tune; auto: when the base is large"
    )
    lora_above_parameters: int = Field(
        50_000_000, gt=0, description="with use_lora: auto, bases with more parameters train a LoRA adapter"
    )

    @model_validator(mode="after")
    def _one_process(self) -> RewardModelConfig:
        if self.num_processes != 1:
            raise ValueError("num_processes: the reward model trains in one process (a GPU host gives it one GPU)")
        return self

    def trl_args(self) -> dict[str, Any]:
        args = super().trl_args()
        if self.warmup_steps is None:
            args["warmup_steps"] = min(20, self.steps // 10)
        return args


class SFTStageConfig(TrainConfig):
    """Supervised fine-tuning of the LoRA adapter with TRL's SFTTrainer (loss on the assistant turn)."""

    TRL_NAMES: ClassVar[dict[str, str]] = {**TrainConfig.TRL_NAMES, "max_length": "max_length"}

    learning_rate: float = Field(2e-3, gt=0)
    max_length: int = Field(512, gt=0, description="longest tokenized example; longer ones are truncated")
    from_base: bool = Field(False, description="start a fresh adapter on the base instead of the previous one")


class SamplingConfig(Section):
    """Sampling k completions per training prompt (rejection sampling, a collected cold start)."""

    prompts: int = Field(400, gt=0, description="training prompts to sample from")
    samples_per_prompt: int = Field(4, gt=0)
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(160, gt=0)
    batch_size: int = Field(128, gt=0, description="completions per generation batch")
    use_vllm: bool = Field(False, description="sample with vLLM (needs vLLM and a GPU; else batched HF generate)")
    vllm_gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="share of the GPU vLLM may take")
    vllm_max_model_length: int | None = Field(
        None, gt=0, description="vLLM's context length (prompt + completion); default: the model's own")
    language_threshold: float = Field(1.0, ge=0, le=1, description="least share of target-language words")
    max_tokens: int | None = Field(None, gt=0, description="drop completions longer than this (default: unfinished)")


class Exemplar(Section):
    """One worked example shown to the model before the question (few-shot collection)."""

    prompt: str
    completion: str


class CollectConfig(SamplingConfig):
    """How a collected cold start is sampled and cleaned (sources r1_zero and few_shot)."""

    per_prompt: int = Field(1, gt=0, description="kept completions per prompt at most (spreads the set over prompts)")
    summary: str = Field("so the answer is {answer} .",
                         description="the one-line summary closing the reasoning when it lacks one ({answer})")
    exemplars: list[Exemplar] | None = Field(
        None, description="few_shot: worked examples put before the question (default: built-in, pocket world)")
    r1_zero_run: str | None = Field(
        None, description="r1_zero: take this run's r1_zero adapter instead of building one in this run")


class ColdStartConfig(SFTStageConfig):
    """Stage 1: SFT on a few hundred readable long chains of thought, from one of four sources:
    generated (the pocket world's oracle), file (`dataset`), r1_zero (the verified, readable outputs
    of an R1-Zero adapter) or few_shot (the base prompted with long worked examples)."""

    source: Literal["generated", "file", "r1_zero", "few_shot"] = Field(
        "generated", description="where the examples come from (default: file when `dataset` is set, else generated)")
    examples: int = Field(300, gt=0, description="cold-start examples at most (generated, or kept when collected)")
    dataset: str | None = Field(None, description="source file: a JSONL/Parquet file of {prompt, completion} rows")
    collect: CollectConfig = CollectConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("source") is None:
            data = {**data, "source": "file" if data.get("dataset") else "generated"}
        return data

    @model_validator(mode="after")
    def _source(self) -> ColdStartConfig:
        if self.source == "file" and not self.dataset:
            raise ValueError("source: file needs `dataset`, a JSONL/Parquet file of {prompt, completion} rows")
        if self.source != "file" and self.dataset:
            raise ValueError(f"dataset is read only with source: file (source is {self.source})")
        return self


# --- scale-out: where stages run (docs/scale-out.md) -------------------------------------------


class VllmServerConfig(Section):
    """The vLLM server a GRPO stage with `use_vllm: true, vllm_mode: server` generates on (TRL's
    GRPOConfig vllm_server_*), started apart with `vllm serve` (docs/scale-out.md). Preflight and
    `r1 doctor` check that it answers and serves the stage's base model."""

    host: str = Field("127.0.0.1", min_length=1, description="the server's address (TRL vllm_server_host)")
    port: int = Field(8000, gt=0, lt=65536, description="the server's HTTP port (TRL vllm_server_port)")
    base_url: str | None = Field(
        None, description="http(s)://host:port[/path]; when set, host and port are ignored (TRL vllm_server_base_url)")
    timeout: float = Field(240.0, gt=0, description="seconds TRL waits for the server to answer at the start")
    group_port: int = Field(
        51216, gt=0, lt=65536, description="port of the NCCL weight-update group, opened by the trainer's rank 0: "
        "the server's GPUs must reach it (TRL vllm_group_port)")
    preflight: bool = Field(
        True, description="check at the run's start that the server answers and serves the base; false when the "
        "stage's gang job starts the server itself (then $R1_VLLM_SERVER_URL, set by the job, says where it is)")

    @model_validator(mode="after")
    def _url(self) -> VllmServerConfig:
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {self.base_url!r})")
        return self

    @property
    def url(self) -> str:
        """Where TRL will connect, as it builds it."""
        return self.base_url.rstrip("/") if self.base_url else f"http://{self.host}:{self.port}"


class DistributedConfig(Section):
    """Where launched stages run: the machines of a stage with `num_processes` > 1 and the interpreter
    of launched training processes. Not in any stage's cache key: the same N processes train the same
    thing on one machine or several."""

    num_machines: int = Field(1, gt=0, description="machines a stage with num_processes > 1 spreads over "
                              "(num_processes is the total; it must divide by this)")
    machine_rank: int | None = Field(
        None, ge=0, description="this machine's rank; default: $R1_MACHINE_RANK (each node of a gang job sets "
        "it, e.g. from $SLURM_NODEID), else 0")
    main_process_ip: str | None = Field(
        None, description="machine 0's address, reachable from every machine (needed with num_machines > 1)")
    main_process_port: int | None = Field(
        None, gt=0, lt=65536, description="the rendezvous port on machine 0, the same on every machine (needed with "
        "num_machines > 1; one machine picks a free port)")
    rdzv_backend: Literal["c10d", "static"] = Field(
        "c10d", description="torchrun rendezvous across machines (c10d: ranks assigned as machines join)")
    python: str | None = Field(
        None, description="interpreter of launched training processes, e.g. .venv-gpu/bin/python (the GPU "
        "environment); $R1_WORKER_PYTHON wins; default: this process's own. When it is another one, "
        "single-process stages run through the same launched worker")
    submit: str | None = Field(
        None, description="with num_machines > 1: the command that starts the stage's gang job and waits for it "
        "(sbatch --wait ..., a Kubernetes job); {spec}, {python}, {num_machines}, {num_processes} are filled in")

    @model_validator(mode="after")
    def _several_machines(self) -> DistributedConfig:
        if self.num_machines > 1:
            missing = [k for k in ("main_process_ip", "main_process_port", "submit") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"num_machines {self.num_machines} needs {', '.join(missing)} (docs/scale-out.md, "
                                 "'Several machines')")
        if self.machine_rank is not None and self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank {self.machine_rank} must be below num_machines {self.num_machines}")
        return self


class GuardConfig(Section):
    """Reward-hacking guard: stop when validation accuracy (greedy, verifiable prompts) falls by more
    than `margin`, and keep the best adapter. It reads the validation split, never test."""

    every: int = Field(10, gt=0, description="evaluate every N steps")
    margin: float = Field(0.05, ge=0, le=1)
    prompts: int = Field(64, gt=0, description="validation prompts per check (greedy)")


GRPO_TRL_NAMES = ("num_generations", "beta", "loss_type", "epsilon", "epsilon_high", "scale_rewards",
                  "max_completion_length", "temperature", "top_p", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
                  "vllm_max_model_length")


class GRPOStageConfig(TrainConfig):
    """A GRPO stage (TRL GRPOTrainer): every knob that matters, set on purpose (TRL's own defaults are
    DAPO's loss, no KL and bf16; set what you mean). Anything else of GRPOConfig (num_iterations,
    steps_per_generation, importance_sampling_level, mask_truncated_completions, ...) goes in `trl`."""

    TRL_CONFIG: ClassVar[str] = "GRPOConfig"
    TRL_NAMES: ClassVar[dict[str, str]] = {**TrainConfig.TRL_NAMES, **{name: name for name in GRPO_TRL_NAMES}}
    TRL_SET_ELSEWHERE: ClassVar[dict[str, str]] = {  # core/vllm_server.py trl_args
        "vllm_server_base_url": "vllm_server.base_url", "vllm_server_host": "vllm_server.host",
        "vllm_server_port": "vllm_server.port", "vllm_server_timeout": "vllm_server.timeout",
        "vllm_group_port": "vllm_server.group_port"}

    learning_rate: float = Field(1e-3, gt=0)
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="accuracy"), RewardSpec(name="format")])
    num_generations: int = Field(8, ge=2, description="completions per prompt (the group)")
    beta: float = Field(0.0, ge=0, description="KL coefficient (0 = no reference model)")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"] = Field(
        "dapo", description="how token losses are aggregated (TRL GRPOConfig.loss_type): dapo normalises over the "
        "batch's tokens, grpo per sequence (length bias), dr_grpo by a constant")
    epsilon: float = Field(0.2, gt=0, description="lower clip range")
    epsilon_high: float | None = Field(0.28, gt=0, description="upper clip range (DAPO clip-higher)")
    scale_rewards: Literal["group", "batch", "none"] = "group"
    max_completion_length: int = Field(128, gt=0)
    temperature: float = Field(1.0, gt=0, description="rollout temperature (the paper: 1.0)")
    top_p: float = Field(1.0, gt=0, le=1)
    prompts: int | None = Field(None, gt=0, description="use at most this many training prompts")
    validation_every: int | None = Field(
        None, gt=0, description="measure greedy validation accuracy every N steps (validation_curve.json)")
    validation_prompts: int = Field(64, gt=0, description="validation prompts per measurement")
    general_fraction: float = Field(0.0, ge=0, lt=1, description="share of general (unverifiable) prompts mixed in "
                                    "(stages/general.py; judged by the rewards with rows: general)")
    guard: GuardConfig | None = Field(None, description="a reward-hacking guard: keep the best adapter, stop when "
                                      "validation accuracy falls (None: train all the steps)")
    log_rollouts: bool = Field(False, description="save every rollout (step, prompt, completion, tokens, gold "
                               "columns) to the stage's rollouts.jsonl, for offline analyses (the ablation lab)")
    use_vllm: bool = Field(False, description="vLLM rollouts (needs vLLM and a GPU; else HF generate)")
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="colocate: share of the GPU vLLM reserves (weights + KV cache); the trainer "
        "gets the rest")
    vllm_max_model_length: int | None = Field(
        None, gt=0, description="colocate: vLLM's context length (prompt + completion); default: the model's own, "
        "whose KV cache may not fit the share above")
    vllm_server: VllmServerConfig = VllmServerConfig()

    @model_validator(mode="after")
    def _group_divides_batch(self) -> GRPOStageConfig:
        batch = self.batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(f"num_generations ({self.num_generations}) must divide the generation batch "
                             f"batch_size * gradient_accumulation_steps = {batch}")
        return self


class RejectionSamplingConfig(SamplingConfig):
    """Stage 3a: sample from the RL adapter, keep the good reasoning, mix in general data."""

    keep_correct: bool = Field(True, description="drop completions whose answer does not verify")
    keep_single_language: bool = Field(True, description="drop chains of thought that mix languages")
    dedupe: bool = True
    reasoning_to_general: float = Field(3.0, gt=0, description="ratio of reasoning to general rows (paper ~3:1)")
    general_dataset: str | None = Field(
        None, description="file of general {prompt, completion} rows; default: the pocket world's general tasks")


class AllScenarioConfig(GRPOStageConfig):
    """Stage 4: GRPO on mixed prompts; rule rewards where a verifier exists, the reward model elsewhere."""

    # the section's own default, so a recipe that sets other keys of it keeps the reward model and
    # language consistency (the paper's stage 4), not GRPOStageConfig's accuracy + format
    rewards: list[RewardSpec] = Field(default_factory=lambda: [
        RewardSpec(name="accuracy", rows="verifiable"), RewardSpec(name="format", weight=0.5),
        RewardSpec(name="language_consistency", weight=0.5), RewardSpec(name="reward_model", rows="general"),
    ])
    general_fraction: float = Field(0.25, ge=0, lt=1, description="share of general (unverifiable) prompts")
    guard: GuardConfig | None = GuardConfig()


class DistillConfig(Section):
    """Distillation: a smaller student SFT'd on the teacher's rejection-sampled data, and the same
    student trained by RL alone for comparison."""

    student_model: str = Field("pocket", description="'pocket' (build `student` like the base) or a model path")
    student: PocketConfig = PocketConfig(hidden_size=64, num_layers=2, intermediate_size=192)
    sft: SFTStageConfig = SFTStageConfig(from_base=True)
    rl: GRPOStageConfig = GRPOStageConfig()


class EvalConfig(Section):
    """Held-out evaluation (the paper: pass@1 from k samples at temperature 0.6, top-p 0.95)."""

    samples: int = Field(16, gt=0, description="k samples per prompt for pass@1 and cons@k")
    temperature: float = Field(0.6, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(160, gt=0)
    prompts: int | None = Field(None, gt=0, description="evaluate at most this many test prompts")
    stress_prompts: int | None = Field(100, gt=0, description="at most this many prompts of each stress split")
    stress_stages: list[str] | None = Field(
        None, description="evaluate the stress splits only for these stages' models (None: every evaluated stage)")
    stage_samples: dict[str, PositiveInt] = Field(
        default_factory=dict, description="k for these stages' evaluations instead of `samples` (stage -> k)")
    batch_size: int = Field(256, gt=0)


# --- the recipe ----------------------------------------------------------------------------


class Recipe(Section):
    name: str
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig
    reward_model: RewardModelConfig = RewardModelConfig()
    cold_start: ColdStartConfig = ColdStartConfig()
    reasoning_rl: GRPOStageConfig = GRPOStageConfig(rewards=[
        RewardSpec(name="accuracy"), RewardSpec(name="format", weight=0.5),
        RewardSpec(name="language_consistency", weight=0.5),
    ])
    rejection_sampling: RejectionSamplingConfig = RejectionSamplingConfig()
    sft: SFTStageConfig = SFTStageConfig()
    all_scenario_rl: AllScenarioConfig = AllScenarioConfig()
    r1_zero: GRPOStageConfig = GRPOStageConfig()
    distill: DistillConfig = DistillConfig()
    eval: EvalConfig = EvalConfig()
    distributed: DistributedConfig = DistributedConfig()

    def resolved(self) -> dict[str, Any]:
        """The recipe as plain JSON-able data, defaults filled in (for manifests and W&B)."""
        return self.model_dump(mode="json")


# --- loading -------------------------------------------------------------------------------


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union")))
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, _, key = loc.rpartition(".")
        known = _known_keys(model, parent)
        hint = difflib.get_close_matches(key, known, n=1)
        msg = f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        return f"{loc}: {msg}; expected one of: {', '.join(sorted(known))}"
    if kind == "missing":
        return f"{loc}: required key is missing"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"


def _known_keys(model: type[BaseModel], dotted: str) -> list[str]:
    cls: Any = model
    for part in [p for p in dotted.split(".") if p]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        cls = next((a for a in getattr(ann, "__args__", (ann,)) if hasattr(a, "model_fields")), ann)
    return list(getattr(cls, "model_fields", {}))


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise RecipeError(f"override {override!r}: expected KEY=VALUE, e.g. model.pocket.steps=100")
    key, raw = override.split("=", 1)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"override {override!r}: '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def parse_recipe(data: Any, source: str = "<recipe>", overrides: list[str] | None = None) -> Recipe:
    """Validate raw recipe data (a dict) into a Recipe; `source` names it in errors."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}")
    for override in overrides or []:
        _apply_override(data, override)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        lines, from_file = [], False
        for err in exc.errors():
            origin, inside = _override_of(err, overrides or [])
            from_file = from_file or origin is None or inside
            note = f" (involves override {origin!r})" if inside else f" (from override {origin!r})" if origin else ""
            lines.append(_describe(err, Recipe) + note)
        # A key the user typed on the command line is blamed on the override, not on the file.
        head = f"{source}: invalid recipe" if from_file else "invalid override" + ("s" if len(lines) > 1 else "")
        raise RecipeError(f"{head}\n  " + "\n  ".join(lines)) from None


def _override_of(err: dict[str, Any], overrides: list[str]) -> tuple[str | None, bool]:
    """The last KEY=VALUE override that set the key at or above this error's location (the error is
    the override's), else the last one that set a key inside it (the error involves it and may
    involve the file too: True), else (None, False)."""
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union"))]
    keys = [(override, override.split("=", 1)[0].strip().split(".")) for override in reversed(overrides)]
    for override, key in keys:
        if loc[:len(key)] == key:
            return override, False
    for override, key in keys:
        if key[:len(loc)] == loc:
            return override, True
    return None, False


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load configs/<name>.yaml (or a path) into a validated Recipe, applying KEY=VALUE overrides."""
    path = Path(path)
    if not path.exists() and (Path("configs") / f"{path}.yaml").exists():
        path = Path("configs") / f"{path}.yaml"
    if not path.exists():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    return parse_recipe(data, str(path), overrides)
