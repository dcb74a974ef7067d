"""GPU smoke test: the pocket pipeline with every GPU path on, checked stage by stage, in < 10 min.

Run on a GPU host, from the controller's environment (make install), with the GPU workers' one built
beside it (make install-gpu):  .venv/bin/python -m bench.gpu_smoke   (--help for the options)

The training and GPU processes run in the GPU environment (vLLM, no Prefect): --worker-python,
else $R1_WORKER_PYTHON, else .venv-gpu/bin/python when it exists, else this interpreter (which then
needs vLLM itself). It runs `r1 pipeline` on the test-size pocket recipe with bf16 in every trainer and
the reward model, vLLM for GRPO rollouts and rejection sampling, and, where two GPUs are left for
training, reasoning RL and SFT over two processes. With two GPUs or more (or --server on), reasoning RL
generates on a `vllm serve` of its own on the last GPU (server mode: TRL's flags, NCCL weight sync on
the group port), all-scenario RL colocated; the base is built first, so the server can serve it. The
pocket model is widened to a 64-wide attention head (vLLM's kernels take 64, not the test recipe's 16).
Then it checks from the run's manifests (and the server's log) that each stage finished and ran where
it should, prints the per-stage walls, and times vLLM against HF generate on the same prompts with the
reasoning-RL adapter, in the GPU environment. Exit status 1 when a check fails; the result goes to
bench/results/gpu_smoke.json. Without a GPU, or without vLLM in the workers' environment, it says so
and exits 2. Never run yet: no GPU has been lent to this project with vLLM installable on it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT
from core import devices, distributed, vllm_server
from core.config import VllmServerConfig
from core.layout import EVAL_RESULTS
from core.runstore import RunStore
from stages import graph, runner
from stages.evaluation import stage_name

RECIPE = ROOT / "configs" / "pocket-test.yaml"
BUDGET_S = 540  # the pipeline's share of the 10 minutes; the speed comparison takes the rest
TRAINERS = ("cold_start", "reasoning_rl", "sft", "all_scenario_rl")


def overrides(gpus: int, server_url: str | None = None, group_port: int = 51216) -> list[str]:
    """The test recipe with every GPU path on; `gpus`: those left for training. With `server_url`,
    reasoning RL generates on that vLLM server."""
    sets = ["model.pocket.hidden_size=256", "model.pocket.num_heads=4", "model.pocket.num_kv_heads=2",
            "model.pocket.intermediate_size=512", "reward_model.bf16=true",
            "rejection_sampling.use_vllm=true", "rejection_sampling.vllm_gpu_memory_utilization=0.5"]
    sets += [f"{stage}.bf16=true" for stage in TRAINERS]
    sets += [f"{stage}.use_vllm=true" for stage in ("reasoning_rl", "all_scenario_rl")]
    if gpus >= 2:
        sets += ["reasoning_rl.num_processes=2", "sft.num_processes=2"]
    if server_url:
        sets += ["reasoning_rl.vllm_mode=server", f"reasoning_rl.vllm_server.base_url={server_url}",
                 f"reasoning_rl.vllm_server.group_port={group_port}", "reasoning_rl.vllm_server.timeout=300"]
    return sets


def find_worker_python(given: str | None) -> str:
    """The GPU environment's interpreter: --worker-python, $R1_WORKER_PYTHON, .venv-gpu, or ours."""
    gpu_venv = ROOT / ".venv-gpu" / "bin" / "python"
    return given or os.environ.get(distributed.PYTHON_ENV) or (str(gpu_venv) if gpu_venv.is_file() else sys.executable)


def start_server(worker: str, base: str, gpu: str, port: int, log_path: Path) -> subprocess.Popen:
    """`vllm serve` the base on one GPU, with the flags TRL 1.16's client needs (what the deprecated
    `trl vllm-serve` would exec): dev-mode endpoints, the NCCL weight-transfer engine, processed logprobs."""
    cmd = [worker, "-m", "vllm.entrypoints.cli.main", "serve", base, "--host", "127.0.0.1", "--port", str(port),
           "--gpu-memory-utilization", "0.5", "--max-model-len", "512", "--enable-scale-out",
           "--weight-transfer-config", json.dumps({"backend": "nccl"}), "--logprobs-mode", "processed_logprobs",
           "--max-logprobs", "-1"]
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", devices.VISIBLE: gpu}
    print("starting:", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def wait_for_server(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"FAIL: vllm serve exited with {proc.returncode} before answering (its log: see above)")
        if vllm_server.served_models(VllmServerConfig(base_url=url), timeout=2)[0]:
            return
        time.sleep(2)
    raise SystemExit(f"FAIL: vllm serve did not answer {url}/health within {timeout_s:.0f} s")


def run_pipeline(sets: list[str], run_id: str | None = None, env_extra: dict[str, str] | None = None,
                 budget_s: float = BUDGET_S) -> tuple[str, str, float]:
    """(run id, output, wall seconds) of `r1 pipeline` on the test recipe with `sets`."""
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", **(env_extra or {})}
    cmd = [sys.executable, "-m", "shell.cli", "pipeline", "--recipe", str(RECIPE)]
    if run_id:
        cmd += ["--run-id", run_id]
    for s in sets:
        cmd += ["--set", s]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, errors="replace",
                              timeout=budget_s)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        raise SystemExit(f"FAIL: the pipeline took more than {budget_s:.0f} s; last output:\n{out[-3000:]}") from None
    wall = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    if proc.returncode:
        raise SystemExit(f"FAIL: the pipeline exited with {proc.returncode}; last output:\n{output[-4000:]}")
    found = re.search(r"^run (\S+)", proc.stdout, re.M)
    if not found:
        raise SystemExit("FAIL: no run id in the pipeline's output:\n" + proc.stdout[-2000:])
    return found.group(1), output, wall


def checks(run_id: str, manifests: dict[str, dict[str, Any]], output: str, gpus: int,
           server_log: Path | None = None) -> list[tuple[str, bool, str]]:
    """(what, passed, detail) for each GPU path; `gpus`: those the trainers had."""
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
    if server_log is not None:
        log = server_log.read_text(errors="replace") if server_log.is_file() else ""
        requests = {path: log.count(f"POST {path}") for path in ("/v1/completions", "/update_weights")}
        out.append(("reasoning_rl generated on the vLLM server, weights synced over NCCL",
                    requests["/v1/completions"] > 0 and requests["/update_weights"] > 0, str(requests)))
    if gpus >= 2:
        for stage in ("reasoning_rl", "sft"):
            n = manifests.get(stage, {}).get("metrics", {}).get("num_processes")
            out.append((f"{stage} trained over 2 processes", n == 2, str(n)))
    return out


def generation_speed(run_id: str, worker: str, gpu: str) -> dict[str, float]:
    """Completion tokens per second of vLLM and of HF generate, same prompts, adapter and settings, in the
    GPU environment on one GPU (`python -m bench.gpu_smoke --speeds RUN_ID` there)."""
    cmd = [worker, "-m", "bench.gpu_smoke", "--speeds", run_id]
    env = devices.worker_env({**os.environ, devices.VISIBLE: gpu})
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, errors="replace", timeout=300)
    if proc.returncode:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speeds_here(run_id: str) -> dict[str, float]:
    from core.config import load_recipe

    store = RunStore()
    refs = {stage: store.ref(run_id, stage) for stage in (graph.TASK_DATA, graph.BASE, "reasoning_rl")}
    return _speeds(load_recipe(RECIPE, overrides(0)), refs[graph.TASK_DATA], refs[graph.BASE], refs["reasoning_rl"])


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


def build_base(run_id: str, sets: list[str], env_extra: dict[str, str]) -> str:
    """The pocket base of `run_id`, built first (the server must serve it); its path."""
    from core.config import load_recipe

    os.environ.update(env_extra)
    store = RunStore()
    return runner.build([graph.BASE], load_recipe(RECIPE, sets), store, run_id)[graph.BASE].path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-python", help="the GPU environment's interpreter (default: $R1_WORKER_PYTHON, "
                        ".venv-gpu/bin/python when it exists, else this one)")
    parser.add_argument("--server", choices=("auto", "on", "off"), default="auto",
                        help="reasoning RL on a vLLM server of its own (auto: with 2 GPUs or more)")
    parser.add_argument("--speeds", metavar="RUN_ID", help=argparse.SUPPRESS)  # the timing, in the GPU environment
    args = parser.parse_args(argv)
    if args.speeds:
        print(json.dumps(speeds_here(args.speeds)))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA GPU is visible here (torch.cuda.is_available() is False); run it on a GPU host",
              file=sys.stderr)
        return 2
    worker = find_worker_python(args.worker_python)
    info = vllm_server.probe_interpreter(worker) if devices.other_interpreter(worker) else \
        {"vllm": importlib.util.find_spec("vllm") is not None}
    if not info.get("vllm"):
        print(f"gpu_smoke: vLLM is not installed in the workers' environment ({worker}); build it with "
              "`make install-gpu` (docs/scale-out.md, 'Two environments')", file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count()
    visible = [d.strip() for d in os.environ.get(devices.VISIBLE, "").split(",") if d.strip()] or \
        [str(i) for i in range(gpus)]
    if args.server == "on" and gpus < 2:
        print("gpu_smoke: server mode needs 2 GPUs: TRL syncs weights to the server over NCCL, one GPU each side",
              file=sys.stderr)
        return 2
    server = args.server == "on" or (args.server == "auto" and gpus >= 2)
    train_gpus = visible[:-1] if server else visible
    print(f"{gpus} GPU(s): {', '.join(torch.cuda.get_device_name(i) for i in range(gpus))}; workers: {worker}; "
          f"server mode: {'on, GPU ' + visible[-1] if server else 'off'}", flush=True)
    env_extra = {distributed.PYTHON_ENV: worker, devices.VISIBLE: ",".join(train_gpus)}
    t0 = time.perf_counter()
    run_id, server_log, proc = None, None, None
    sets = overrides(len(train_gpus))
    try:
        if server:
            run_id = RunStore().new_run_id("gpu-smoke")
            base = build_base(run_id, sets, env_extra)
            port, group_port = distributed._free_port(), distributed._free_port()
            server_log = RESULTS / "gpu_smoke_server.log"
            RESULTS.mkdir(parents=True, exist_ok=True)
            proc = start_server(worker, base, visible[-1], port, server_log)
            url = f"http://127.0.0.1:{port}"
            wait_for_server(url, proc)
            sets = overrides(len(train_gpus), url, group_port)
        run_id, output, wall = run_pipeline(sets, run_id, env_extra, BUDGET_S - (time.perf_counter() - t0))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    manifests = {m["stage"]: m for m in RunStore().stages(run_id)}
    results = checks(run_id, manifests, output, len(train_gpus), server_log)
    speed = generation_speed(run_id, worker, visible[0])
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
        "gpus": gpus, "workers": worker, "server_mode": server, "run_id": run_id, "pipeline_wall_s": round(wall, 1),
        "total_s": round(total, 1), "stage_wall_s": {n: m.get("wall_s") for n, m in manifests.items()},
        "generation": speed, "checks": [{"check": w, "passed": ok, "detail": d} for w, ok, d in results],
        "passed": passed,
    }, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
