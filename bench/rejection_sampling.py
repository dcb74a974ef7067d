"""Benchmark: rejection-sampling throughput, our batched sampler against one prompt at a time.

Run:  .venv/bin/python -m bench.rejection_sampling
The pocket base, the same training prompts and the pocket recipe's rejection-sampling settings
(k samples per prompt, temperature, top-p, max new tokens). "Batched" is the stage's sampler
(core.generation.generate: left padding, KV cache, many prompts per call); "one at a time" calls
model.generate once per prompt (its k samples in that call, which is the baseline's best case).
Both are verified by the stage's own filter (stages.rejection_sampling.keep_or_reason); the figure
is verified completions per second. Target: batched at least 5x.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

from bench.common import RESULTS, pocket_inputs  # noqa: E402

PROMPTS = 64


def one_at_a_time(model: Any, tokenizer: Any, prompts: list[str], k: int, cfg: Any, seed: int) -> list[list[Any]]:
    """The naive sampler: one model.generate call per prompt."""
    import torch

    from core.generation import Completion, _length

    torch.manual_seed(seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    with torch.no_grad():
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            ids = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, num_return_sequences=k, do_sample=True,
                                 temperature=cfg.temperature, top_p=cfg.top_p, pad_token_id=pad_id,
                                 eos_token_id=tokenizer.eos_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            out.append([Completion(t, *_length(row, tokenizer.eos_token_id, pad_id)) for row, t in zip(new, texts,
                                                                                                       strict=True)])
    return out


def verified(rows: list[dict], samples: list[list[Any]], recipe: Any) -> int:
    from stages.rejection_sampling import keep_or_reason

    return sum(keep_or_reason(r, c.text, c.finished, c.num_tokens, recipe.rejection_sampling, recipe.data.language)
               is None
               for r, cs in zip(rows, samples, strict=True) for c in cs)


def main() -> dict[str, Any]:
    from core.generation import generate
    from core.modeling import inference_model, load_tokenizer
    from data.chat import messages, render
    from data.saved import load_split

    logging.basicConfig(level=logging.WARNING)
    recipe, _, _, task_data_ref, base_ref = pocket_inputs()
    cfg = recipe.rejection_sampling
    rows = list(load_split(task_data_ref, "train").shuffle(seed=recipe.seed).select(range(PROMPTS)))
    tokenizer = load_tokenizer(base_ref.path)
    model = inference_model(base_ref.path, None, recipe.model.dtype)
    prompts = [render(tokenizer, messages(r["prompt"], recipe.data.template)) for r in rows]
    k = cfg.samples_per_prompt
    generate(model, tokenizer, prompts[:2], max_new_tokens=8, temperature=1.0, progress=False)  # warm up

    t0 = time.perf_counter()
    batched = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                       top_p=cfg.top_p, n=k, batch_size=cfg.batch_size, seed=recipe.seed, progress=False)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = one_at_a_time(model, tokenizer, prompts, k, cfg, recipe.seed)
    t_single = time.perf_counter() - t0

    v_batched, v_single = verified(rows, batched, recipe), verified(rows, single, recipe)
    rate_b, rate_s = v_batched / t_batched, v_single / t_single
    result = {
        "rejection_sampling_speedup": round(rate_b / rate_s, 2) if rate_s else None,
        "completions_speedup": round(t_single / t_batched, 2),
        "completions": PROMPTS * k, "prompts": PROMPTS, "samples_per_prompt": k,
        "batched": {"wall_s": round(t_batched, 2), "verified": v_batched, "verified_per_s": round(rate_b, 3),
                    "completions_per_s": round(PROMPTS * k / t_batched, 2)},
        "one_at_a_time": {"wall_s": round(t_single, 2), "verified": v_single, "verified_per_s": round(rate_s, 3),
                          "completions_per_s": round(PROMPTS * k / t_single, 2)},
    }
    for name in ("batched", "one_at_a_time"):
        r = result[name]
        print(f"{name:14s} {r['wall_s']:7.1f} s  {r['verified']:4d}/{PROMPTS * k} verified  "
              f"{r['verified_per_s']:7.2f} verified/s  {r['completions_per_s']:7.2f} completions/s")
    print(f"rejection-sampling speedup (verified completions per second): {result['rejection_sampling_speedup']}x "
          f"(target >= 5)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rejection_sampling.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
