"""vLLM server mode: a GRPO stage's `vllm_server` settings as TRL's GRPOConfig takes them, and the
check that the server answers and serves the stage's base model (preflight, `r1 doctor`, `r1 dry-run`).

TRL 1.16 in server mode (trl/generation/vllm_client.py) talks HTTP to a `vllm serve` process: it waits
for GET /health (up to `vllm_server_timeout`), reads the model from GET /v1/models, the server's config
from GET /server_info (needs VLLM_SERVER_DEV_MODE=1 and a weight-transfer engine), its world size from
GET /get_world_size, generates with POST /v1/completions (token ids in, n completions per prompt,
logprobs), and before each generation pushes the merged LoRA weights over an NCCL group on
`vllm_group_port` (POST /init_weight_transfer_engine once, then /start_weight_update, /update_weights,
/finish_weight_update, /reset_prefix_cache). The training side needs vLLM installed even so: TRL imports
vLLM's NCCL weight-transfer code on the client, and the sync needs a CUDA device.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from core.config import GRPOStageConfig, VllmServerConfig


def uses_server(cfg: GRPOStageConfig) -> bool:
    return cfg.use_vllm and cfg.vllm_mode == "server"


URL_ENV = "R1_VLLM_SERVER_URL"  # set by a gang job that starts the server on a node of its own (Slurm)


def trl_args(cfg: GRPOStageConfig) -> dict[str, Any]:
    """The stage's `vllm_server` settings under TRL's GRPOConfig names; $R1_VLLM_SERVER_URL, where the
    training processes see it, wins over host, port and base_url (the node is known once the job runs)."""
    server = cfg.vllm_server
    return {"vllm_server_base_url": os.environ.get(URL_ENV) or server.base_url, "vllm_server_host": server.host,
            "vllm_server_port": server.port, "vllm_server_timeout": server.timeout,
            "vllm_group_port": server.group_port}


def _get(url: str, timeout: float) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
        return resp.status, json.loads(body) if body.strip() else None


def served_models(server: VllmServerConfig, timeout: float = 5.0) -> tuple[list[dict[str, Any]] | None, str]:
    """(the models the server lists, '') when it answers /health and /v1/models; (None, why) when not."""
    url = server.url
    try:
        status, _ = _get(f"{url}/health", timeout)
        if status != 200:
            return None, f"{url}/health answered HTTP {status}"
        status, models = _get(f"{url}/v1/models", timeout)
    except urllib.error.HTTPError as exc:
        return None, f"{exc.url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{url} does not answer ({getattr(exc, 'reason', exc)})"
    data = (models or {}).get("data") if isinstance(models, dict) else None
    if status != 200 or not data:
        return None, f"{url}/v1/models lists no model (HTTP {status})"
    return data, ""


def _same_model(base: str, served: dict[str, Any]) -> bool:
    names = {str(served.get("id", "")), str(served.get("root", ""))}
    if base in names:
        return True
    local = Path(base).expanduser()
    return local.exists() and any(n and Path(n).expanduser().exists() and Path(n).expanduser().resolve()
                                  == local.resolve() for n in names)


def check(server: VllmServerConfig, base: str | None, timeout: float = 5.0) -> tuple[bool, str]:
    """(ok, what was found): the server answers and serves `base` (None: any model; not yet known)."""
    models, why = served_models(server, timeout)
    if models is None:
        return False, why
    ids = ", ".join(str(m.get("id")) for m in models)
    if base is None:
        return True, f"{server.url} answers, serves {ids}"
    if not any(_same_model(base, m) for m in models):
        return False, (f"{server.url} serves {ids}, not the stage's base {base!r}: start it with "
                       f"`vllm serve {base}` (TRL overwrites the served weights with the trained ones, so the "
                       "architecture and tokenizer must be the base's)")
    return True, f"{server.url} answers, serves {base}"


_PROBE = ("import importlib.util, json, torch; print(json.dumps({'vllm': importlib.util.find_spec('vllm') is not None,"
          " 'prefect': importlib.util.find_spec('prefect') is not None, 'cuda': torch.cuda.is_available()}))")


def probe_interpreter(python: str, timeout: float = 120.0) -> dict[str, Any]:
    """What another interpreter (the GPU workers' environment) has: vllm, prefect, a CUDA device."""
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"{python}: {exc}"}


def vllm_missing(python: str | None = None) -> str | None:
    """Why the training processes (run by `python`, None: this one) cannot use vLLM, or None."""
    if python is None:
        import torch

        info = {"vllm": importlib.util.find_spec("vllm") is not None, "cuda": torch.cuda.is_available()}
    else:
        info = probe_interpreter(python)
        if "error" in info:
            return f"the worker interpreter cannot be run ({info['error']})"
    where = f" in the workers' environment ({python})" if python else ""
    if not info["vllm"]:
        return f"vLLM is not installed{where} (make install-gpu builds the GPU environment; docs/scale-out.md)"
    if not info["cuda"]:
        return f"no CUDA GPU is visible{where}"
    return None
