"""k completions per rendered prompt from a base model and an optional adapter, for the stages that
sample a dataset (rejection sampling, a collected cold start): vLLM when the recipe asks for it and
it can run here, else batched HF generate (with a warning saying why when vLLM was asked for)."""

from __future__ import annotations

from typing import Any

from core.config import SamplingConfig
from core.generation import Completion, generate, generate_vllm, vllm_usable
from core.modeling import adapter_path, inference_model
from core.runstore import Ref


def sample(cfg: SamplingConfig, setting: str, base_ref: Ref, adapter_ref: Ref | None, tokenizer: Any,
           rendered: list[str], *, model: Any, seed: int, desc: str) -> list[list[Completion]]:
    """`cfg.samples_per_prompt` completions of each rendered prompt; `setting` names cfg in messages,
    `model` is the recipe's model section (dtype, LoRA rank)."""
    adapter = adapter_path(adapter_ref) if adapter_ref is not None else None
    if cfg.use_vllm and vllm_usable(f"{setting}.use_vllm", "sampling with batched HF generate"):
        return generate_vllm(base_ref.path, adapter, tokenizer, rendered, max_new_tokens=cfg.max_new_tokens,
                             temperature=cfg.temperature, top_p=cfg.top_p, n=cfg.samples_per_prompt, seed=seed,
                             lora_rank=model.lora.r, gpu_memory_utilization=cfg.vllm_gpu_memory_utilization)
    llm = inference_model(base_ref.path, adapter, model.dtype)
    return generate(llm, tokenizer, rendered, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                    top_p=cfg.top_p, n=cfg.samples_per_prompt, batch_size=cfg.batch_size, seed=seed, desc=desc)
