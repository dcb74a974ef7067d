"""k completions per rendered prompt from a base model and an optional adapter, for the stages that
sample a dataset (rejection sampling, a collected cold start): vLLM when the recipe asks for it and
it can run here, else batched HF generate on this process's accelerator (with a warning saying why
when vLLM was asked for). Every sampler stops at the end of turn (core/modeling.py, stop tokens).
On a GPU host callers run `sample` in a process of its own (core/devices.py), so vLLM's memory is
all back before the next stage trains; its arguments are plain values, so they pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import devices
from core.config import SamplingConfig
from core.generation import Completion, generate, generate_vllm, vllm_usable
from core.modeling import adapter_path, inference_model, load_tokenizer, stop_token_ids
from core.runstore import Ref


def sample(cfg: SamplingConfig, setting: str, base: str, adapter: Path | None, rendered: list[str], *,
           dtype: str, lora_rank: int, eos_token: str | None, seed: int,
           desc: str) -> tuple[str, list[list[Completion]]]:
    """(what sampled, `cfg.samples_per_prompt` completions of each rendered prompt); `setting` names
    cfg in messages."""
    tokenizer = load_tokenizer(base, eos_token)
    if cfg.use_vllm and vllm_usable(f"{setting}.use_vllm", "sampling with batched HF generate"):
        return "vllm", generate_vllm(
            base, adapter, tokenizer, rendered, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
            top_p=cfg.top_p, n=cfg.samples_per_prompt, seed=seed, lora_rank=lora_rank,
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, stop_token_ids=stop_token_ids(tokenizer),
            max_model_len=cfg.vllm_max_model_length)
    model = inference_model(base, adapter, dtype)
    return f"hf on {model.device}", generate(
        model, tokenizer, rendered, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        n=cfg.samples_per_prompt, batch_size=cfg.batch_size, seed=seed, desc=desc)


def sample_isolated(cfg: SamplingConfig, setting: str, base_ref: Ref, adapter_ref: Ref | None, rendered: list[str],
                    *, model: Any, seed: int, desc: str) -> tuple[str, list[list[Completion]]]:
    """`sample` for a stage: the recipe's model settings (`model`) unpacked, and on a GPU host in a
    process of its own, so vLLM's memory is all back before the next stage trains."""
    return devices.on_one_gpu(sample, cfg, setting, base_ref.path, adapter_path(adapter_ref) if adapter_ref else None,
                              rendered, dtype=model.dtype, lora_rank=model.lora.r, eos_token=model.eos_token,
                              seed=seed, desc=desc)
