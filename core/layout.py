"""What a stage directory holds: the file and folder names that the stages, the run store, the
tracker, the report and the benches agree on, defined once."""

MANIFEST = "manifest.json"  # every finished stage: what it was built from and what it wrote
# The one part of a work directory that survives a killed attempt: trainer checkpoints to resume
# from. Everything else is wiped before a new attempt, and this is dropped once the stage is done.
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"  # a LoRA adapter (training stages)
BEST_ADAPTER = "best_adapter"  # the reward-hacking guard's best adapter while it trains
MODEL = "model"  # a whole model (the merged model, the reward model's classifier)
DATASET = "dataset"  # a `datasets` dataset (the cold-start and rejection-sampled sets)
LOG_HISTORY = "log_history.json"  # the trainer's per-step log (the report plots it)
VALIDATION_CURVE = "validation_curve.json"  # held-out accuracy while training (probe or guard)
EVAL_RESULTS = "eval.json"  # an evaluation's metrics (and the pocket base's accuracy by style)
EVAL_TABLE = "table.md"
SAMPLES = "samples-{split}.jsonl"  # every completion an evaluation scored, one line per prompt
METRICS = "metrics.json"  # the reward model's metrics
ROLLOUTS = "rollouts.jsonl"  # every GRPO rollout of a stage that logs them (log_rollouts: the lab's runs)
HELDOUT_PAIRS = "heldout_pairs.jsonl"  # the reward model's held-out preference pairs
PRETRAINING = "pretraining.json"  # the pocket base's pretraining record (loss curve, wall, dtype)
