# r1-pipeline: `make pipeline` runs the pocket pipeline, `make test` the test suite.
# Both install what they need first (a .venv beside this file: the controller's environment, with
# Prefect). `make install-gpu` builds the GPU workers' environment (.venv-gpu: vLLM, no Prefect);
# `make resolve` asks pip's resolver what both would install. `make lint`: ruff and the import layers.
# `make r1-zero` and `make distill` run the other two training flows.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
RECIPE ?= configs/pocket.yaml
STAMP  := $(VENV)/.installed
VENV_GPU  := .venv-gpu
STAMP_GPU := $(VENV_GPU)/.installed

export WANDB_MODE ?= offline
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# The temporary Prefect server needs more than its default 20 s to answer on a busy 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: base lab install install-gpu resolve sandbox-tool test pipeline r1-zero distill lint format runs clean bench-paper bench-stage2 serve deploy stop report bench dry-run doctor

install: $(STAMP) sandbox-tool

# The code reward runs model-written programs in a bubblewrap sandbox (rewards/sandbox.py). As root
# with apt, install it; otherwise say what to ask for (the code reward refuses to run without it).
sandbox-tool:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "note: bubblewrap (bwrap) is not installed; the code reward will refuse to run. Ask an administrator" \
	         "to install the 'bubblewrap' package (and allow unprivileged user namespaces)."; \
	  fi; }

# Re-install only when the dependency list changes: a no-op install costs ~1 s.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[controller,dev]'
	@touch $(STAMP)

# The GPU workers' environment: the project with vLLM (the `gpu` extra) and without Prefect, for the
# processes that train and sample on GPUs (R1_WORKER_PYTHON=$(CURDIR)/$(VENV_GPU)/bin/python, or the
# recipe's distributed.python; docs/scale-out.md). Gigabytes of CUDA wheels: on a GPU host.
install-gpu: $(STAMP_GPU)

$(STAMP_GPU): pyproject.toml
	@test -x $(VENV_GPU)/bin/python || $(PYTHON) -m venv $(VENV_GPU)
	$(VENV_GPU)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_GPU)/bin/python -m pip install --quiet -e '.[gpu]'
	@touch $(STAMP_GPU)

# What `make install` and `make install-gpu` would install, from pip's resolver (metadata only, ~1 min),
# and whether one environment with both is possible yet (the canary).
resolve: install
	$(PY) -m shell.environments controller gpu canary

# The import layers (pyproject.toml [tool.importlinter]) first: seconds, and a broken layer fails CI.
test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# The three training flows from the terminal: make r1-zero RECIPE=configs/pocket-test.yaml; RUN_ID=<id>
# resumes a run. Ctrl-C stops a run and prints the command that resumes it.
RUN_ARGS = --recipe $(RECIPE) $(if $(RUN_ID),--run-id $(RUN_ID))
pipeline: install
	$(PY) -m shell.cli pipeline $(RUN_ARGS)

r1-zero: install
	$(PY) -m shell.cli r1-zero $(RUN_ARGS)

distill: install
	$(PY) -m shell.cli distill $(RUN_ARGS)

# A local Prefect server (SQLite under .prefect/) and a process worker in the background; waits until
# both answer, then deploys prefect.yaml. UI: http://127.0.0.1:$(PREFECT_PORT)
PREFECT_PORT ?= 4200
serve: install
	$(PY) -m shell.prefect_server start --port $(PREFECT_PORT)

deploy: install
	$(PY) -m shell.prefect_server deploy

stop: install
	$(PY) -m shell.prefect_server stop

# Rebuild a run's report: make report RUN_ID=pocket-20260101-120000-abcd
report: install
	@test -n "$(RUN_ID)" || { echo "usage: make report RUN_ID=<run id>  (see: make runs)"; exit 2; }
	$(PY) -m shell.cli report $(RUN_ID)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .

# Validate a recipe and print its plan without loading weights: make dry-run RECIPE=configs/qwen2.5-1.5b-math.yaml
dry-run: install
	$(PY) -m shell.cli dry-run --recipe $(RECIPE)

# All benchmarks (at most 30 min on 2 CPU cores): bench/results/perf.json and perf.md
bench: install
	$(PY) -m bench.perf

# Is this machine ready? Versions, device, free disk, Prefect server, W&B mode, and what to fix.
doctor: install
	$(PY) -m shell.cli doctor

runs: install
	$(PY) -m shell.cli runs

clean:
	rm -rf runs .pytest_cache .ruff_cache

# The paper's findings in the pocket world: base, R1-Zero, R1, distilled vs RL-only student, over seeds
# 0, 1 and 2 side by side (one process each; SEEDS=1 runs one), then bench/results/paper_table.json and
# its plots. Each seed logs to runs/bench-paper-<recipe>-seed<N>/bench-paper.log; run again to resume.
SEEDS ?= 0 1 2
bench-paper: install
	$(PY) -m bench.paper --recipe $(RECIPE) --seeds $(SEEDS)

# The pocket bases the project ships (pocket/bases/: the default recipe's teacher in float32 and in
# bfloat16, its student; bench-paper's seeds 1 and 2 in bfloat16 and their students), rebuilt and refreshed: after any change to the corpus, tokenizer or
# pretraining code or to the default recipe's base settings (tests/test_shipped_bases.py says when).
base: install
	$(PY) -m shell.bases

# The ablation lab (lab/): the R1 follow-up papers' claims tested as arms of R1-Zero on the pocket world,
# seeds side by side; bench/results/lab.json, lab.md and plots. ARMS="reach dr_grpo" runs a subset
# (python -m lab --list names them); run again to resume.
ARMS ?=
lab: install
	$(PY) -m lab --recipe $(RECIPE) --seeds $(SEEDS) $(if $(ARMS),--arms $(ARMS))

# Stage-2 (reasoning RL) mean reward, first 10% of steps vs last 10%.
bench-stage2: install
	$(PY) -m bench.stage2_reward --recipe $(RECIPE)
