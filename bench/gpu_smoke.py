"""GPU smoke test: the pocket pipeline with every GPU path on, checked stage by stage, in < 10 min on one GPU.

Run on a GPU host (vLLM installed):  .venv/bin/python -m bench.gpu_smoke
Runs `r1 pipeline` on the test-size pocket recipe in a child process with bf16 in every trainer and
the reward model, vLLM for GRPO rollouts (colocate) and rejection sampling, and, where two GPUs are
visible, reasoning RL and SFT over two processes. The pocket model is widened to a 64-wide attention
head (vLLM's kernels take 64, not the test recipe's 16). Then it checks from the run's manifests that
each stage finished and ran where it should (trainers and evaluations on cuda, rollouts and rejection
sampling with vLLM, two processes where asked), prints the per-stage walls, and times vLLM against HF
generate on the same prompts with the reasoning-RL adapter. Exit status 1 when a check fails; the
result goes to bench/results/gpu_smoke.json. Without a GPU (or vLLM) it says so and exits 2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import torch

from bench.common import RESULTS, ROOT
from core.layout import EVAL_RESULTS
from core.runstore import RunStore
from stages import graph
from stages.evaluation import stage_name

RECIPE = ROOT / "configs" / "pocket-test.yaml"
BUDGET_S = 540  # the pipeline's share of the 10 minutes; the speed comparison takes the rest
TRAINERS = ("cold_start", "reasoning_rl", "sft", "all_scenario_rl")


def overrides(gpus: int) -> list[str]:
    """The test recipe with every GPU path on."""
    sets = ["model.pocket.hidden_size=256", "model.pocket.num_heads=4", "model.pocket.num_kv_heads=2",
            "model.pocket.intermediate_size=512", "reward_model.bf16=true",
            "rejection_sampling.use_vllm=true", "rejection_sampling.vllm_gpu_memory_utilization=0.5"]
    sets += [f"{stage}.bf16=true" for stage in TRAINERS]
    sets += [f"{stage}.use_vllm=true" for stage in ("reasoning_rl", "all_scenario_rl")]
    if gpus >= 2:
        sets += ["reasoning_rl.num_processes=2", "sft.num_processes=2"]
    return sets


def run_pipeline(sets: list[str]) -> tuple[str, str, float]:
    """(run id, output, wall seconds) of `r1 pipeline` on the test recipe with `sets`."""
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    cmd = [sys.executable, "-m", "shell.cli", "pipeline", "--recipe", str(RECIPE)]
    for s in sets:
        cmd += ["--set", s]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, errors="replace",
                              timeout=BUDGET_S)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        raise SystemExit(f"FAIL: the pipeline took more than {BUDGET_S} s; last output:\n{out[-3000:]}") from None
    wall = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    if proc.returncode:
        raise SystemExit(f"FAIL: the pipeline exited with {proc.returncode}; last output:\n{output[-4000:]}")
    found = re.search(r"^run (\S+)", proc.stdout, re.M)
    if not found:
        raise SystemExit("FAIL: no run id in the pipeline's output:\n" + proc.stdout[-2000:])
    return found.group(1), output, wall


def checks(run_id: str, manifests: dict[str, dict[str, Any]], output: str, gpus: int) -> list[tuple[str, bool, str]]:
    """(what, passed, detail) for each GPU path."""
    flow = graph.FLOWS["r1-pipeline"]
    expected = [s.name for s in graph.flow_stages(flow)] + [stage_name(e) for e in graph.flow_evaluations(flow)]
    out = [("every stage finished", all(s in manifests for s in expected),
            ", ".join(s for s in expected if s not in manifests) or "all")]
    for stage in (*TRAINERS, "reward_model"):
        device = manifests.get(stage, {}).get("metrics", {}).get("device", "?")
        out.append((f"{stage} trained on the GPU", device.startswith("cuda"), device))
    for stage in ("reasoning_rl", "all_scenario_rl"):
        rollouts = manifests.get(stage, {}).get("metrics", {}).get("rollouts", "?")
        out.append((f"{stage} rolled out with vLLM", rollouts == "vllm", rollouts))
    sampler = manifests.get("rejection_sampling", {}).get("metrics", {}).get("sampler", "?")
    out.append(("rejection sampling sampled with vLLM", sampler == "vllm", sampler))
    for name in manifests:
        if name.startswith("eval_"):
            device = json.loads((RunStore().stage_dir(run_id, name) / EVAL_RESULTS).read_text()).get("device", "?")
            out.append((f"{name} evaluated on the GPU", device.startswith("cuda"), device))
    out.append(("no stage fell back from vLLM", "is set but" not in output,
                "no fallback warning" if "is set but" not in output else "a vLLM fallback warning was logged"))
    if gpus >= 2:
        for stage in ("reasoning_rl", "sft"):
            n = manifests.get(stage, {}).get("metrics", {}).get("num_processes")
            out.append((f"{stage} trained over 2 processes", n == 2, str(n)))
    return out


def generation_speed(run_id: str) -> dict[str, float]:
    """Completion tokens per second of vLLM and of HF generate, same prompts, adapter and settings."""
    from core import devices
    from core.config import load_recipe

    store = RunStore()
    refs = {stage: store.ref(run_id, stage) for stage in (graph.TASK_DATA, graph.BASE, "reasoning_rl")}
    recipe = load_recipe(RECIPE, overrides(0))
    return devices.run_isolated(_speeds, recipe, refs[graph.TASK_DATA], refs[graph.BASE], refs["reasoning_rl"])


def _speeds(recipe: Any, task_data_ref: Any, base_ref: Any, adapter_ref: Any) -> dict[str, float]:
    # in a child: vLLM's engine and the HF model each leave the GPU when it ends
    from core.generation import generate, generate_vllm
    from core.modeling import adapter_path, inference_model, load_tokenizer, stop_token_ids
    from data.chat import messages, render
    from data.saved import load_split

    cfg = recipe.rejection_sampling
    tokenizer = load_tokenizer(base_ref.path)
    rows = list(load_split(task_data_ref, "train"))[:256]
    prompts = [render(tokenizer, messages(r["prompt"], recipe.data.template)) for r in rows]
    kwargs = {"max_new_tokens": cfg.max_new_tokens, "temperature": 1.0, "top_p": 1.0, "n": 4, "seed": 0}
    t0 = time.perf_counter()
    outs = generate_vllm(base_ref.path, adapter_path(adapter_ref), tokenizer, prompts, lora_rank=recipe.model.lora.r,
                         gpu_memory_utilization=0.5, stop_token_ids=stop_token_ids(tokenizer), **kwargs)
    vllm_s = time.perf_counter() - t0
    vllm_tokens = sum(c.num_tokens for o in outs for c in o)
    model = inference_model(base_ref.path, adapter_path(adapter_ref), "bfloat16")
    t0 = time.perf_counter()
    outs = generate(model, tokenizer, prompts, batch_size=256, progress=False, **kwargs)
    hf_s = time.perf_counter() - t0
    hf_tokens = sum(c.num_tokens for o in outs for c in o)
    return {"prompts": len(prompts), "vllm_s": round(vllm_s, 2), "vllm_tokens_per_s": round(vllm_tokens / vllm_s),
            "hf_s": round(hf_s, 2), "hf_tokens_per_s": round(hf_tokens / hf_s), "hf_device": str(model.device)}


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA GPU is visible here (torch.cuda.is_available() is False); run it on a GPU host",
              file=sys.stderr)
        return 2
    if importlib.util.find_spec("vllm") is None:
        print("gpu_smoke: vLLM is not installed; it checks the vLLM paths too (see docs/scale-out.md, 'vLLM')",
              file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count()
    print(f"{gpus} GPU(s): {', '.join(torch.cuda.get_device_name(i) for i in range(gpus))}", flush=True)
    t0 = time.perf_counter()
    run_id, output, wall = run_pipeline(overrides(gpus))
    manifests = {m["stage"]: m for m in RunStore().stages(run_id)}
    results = checks(run_id, manifests, output, gpus)
    speed = generation_speed(run_id)
    total = time.perf_counter() - t0
    print(f"\nrun {run_id}: pipeline {wall:.0f} s, everything {total:.0f} s")
    for name, m in manifests.items():
        print(f"  {name:24s} {m.get('wall_s', 0):7.1f} s")
    print(f"\ngeneration, {speed['prompts']} prompts x 4: vLLM {speed['vllm_tokens_per_s']} tokens/s "
          f"({speed['vllm_s']} s), HF generate on {speed['hf_device']} {speed['hf_tokens_per_s']} tokens/s "
          f"({speed['hf_s']} s)\n")
    for what, ok, detail in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {detail}")
    passed = all(ok for _, ok, _ in results) and total < 600
    print(f"\n{'PASS' if passed else 'FAIL'} in {total:.0f} s (limit 600 s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_smoke.json").write_text(json.dumps({
        "gpus": gpus, "run_id": run_id, "pipeline_wall_s": round(wall, 1), "total_s": round(total, 1),
        "stage_wall_s": {n: m.get("wall_s") for n, m in manifests.items()}, "generation": speed,
        "checks": [{"check": w, "passed": ok, "detail": d} for w, ok, d in results], "passed": passed,
    }, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
