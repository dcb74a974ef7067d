"""Generation: batched, left-padded, KV-cached HF sampling with a progress bar, and the same samples
from vLLM where it and a GPU are present (rejection sampling with `use_vllm`)."""

from __future__ import annotations

import gc
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from core import decoding
from core.modeling import stop_token_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int  # generated tokens, the end-of-sequence token included
    finished: bool  # ended with end-of-sequence (not cut off at max_new_tokens)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    n: int = 1,
    batch_size: int = 64,
    seed: int | None = None,
    desc: str = "generating",
    progress: bool = True,
) -> list[list[Completion]]:
    """n completions for each rendered prompt; temperature 0 means greedy (then n must be 1)."""
    if temperature <= 0 and n != 1:
        raise ValueError(f"greedy decoding gives one completion per prompt, but n={n} was asked")
    if seed is not None:
        torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, model)
    model.eval()
    # Prompts of similar length batch together: less padding, same results per prompt.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[list[Completion]] = [[] for _ in prompts]
    per_batch = max(1, batch_size // n)
    bar = tqdm(total=len(prompts) * n, desc=desc, unit="completion", disable=not progress, leave=False)
    for start in range(0, len(order), per_batch):
        idx = order[start : start + per_batch]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        if decoding.supported(model):  # the pocket model on a CPU: the lean sampler, same distribution
            new = decoding.sample(model, enc["input_ids"].repeat_interleave(n, 0),
                                  enc["attention_mask"].repeat_interleave(n, 0), max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=top_p, stop_ids=stops, pad_id=pad_id)
        else:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
                {"do_sample": False}
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                pad_token_id=pad_id, eos_token_id=stops, **sampling,
            )
            new = out[:, enc["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, (row, text) in enumerate(zip(new, texts, strict=True)):
            length, finished = _length(row, stops, pad_id)
            results[idx[j // n]].append(Completion(text, length, finished))
        bar.update(len(idx) * n)
    bar.close()
    return results


def _length(tokens: torch.Tensor, stops: list[int], pad_id: int) -> tuple[int, bool]:
    ends = torch.isin(tokens, torch.tensor(stops, device=tokens.device)).nonzero()
    if len(ends):
        return int(ends[0, 0]) + 1, True
    return int((tokens != pad_id).sum()), False


def vllm_unavailable() -> str | None:
    """Why vLLM cannot generate here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed in this environment (the GPU workers' has it: make install-gpu, then "
                "R1_WORKER_PYTHON=.venv-gpu/bin/python; docs/scale-out.md)")
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def vllm_usable(setting: str, fallback: str) -> bool:
    """Whether a stage that asks for vLLM (`setting`) gets it; when not, a warning says what is
    missing and what the stage does instead (`fallback`)."""
    reason = vllm_unavailable()
    if reason:
        log.warning("%s is set but %s: %s", setting, reason, fallback)
    return reason is None


def generate_vllm(
    base: str,
    adapter: Path | None,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    n: int,
    seed: int,
    lora_rank: int,
    gpu_memory_utilization: float,
    stop_token_ids: list[int],
    max_model_len: int | None = None,
) -> list[list[Completion]]:
    """n completions per rendered prompt from vLLM, the LoRA adapter applied per request; the same
    Completion records as `generate`. vLLM stops at its model's own EOS and at `stop_token_ids` (the
    end of turn). Frees what it can of the GPU afterwards; on a GPU host callers run it in a process
    of its own (core/devices.py), which frees all of it."""
    # vLLM is optional (GPU hosts only): imported when a stage really generates with it
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=base, tokenizer=base, seed=seed, enable_lora=adapter is not None,
              max_lora_rank=1 << max(3, (lora_rank - 1).bit_length()),  # vLLM takes powers of two from 8
              gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
    try:
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed,
                                stop_token_ids=stop_token_ids)
        # token ids, as `generate` tokenizes: no special tokens added to the rendered chat
        requests = [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        lora = LoRARequest("adapter", 1, str(adapter)) if adapter is not None else None
        outs = llm.generate(requests, params, lora_request=lora, use_tqdm=True)
        return [[Completion(o.text, len(o.token_ids), o.finish_reason == "stop") for o in out.outputs]
                for out in outs]
    finally:
        del llm
        gc.collect()
        torch.cuda.empty_cache()
