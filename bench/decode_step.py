"""One decode step of the pocket model: HF `generate` against the lean sampler (core/decoding.py).

    python -m bench.decode_step [--base pocket/bases/pocket-seed0-float32] [--batch 64] [--tokens 96]

Both sample the same batch of random prompts for a fixed number of new tokens (no stop token, so
every row runs to the end) at temperature 1, on this process's threads; prints the best of three
runs, per generated step, side by side.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM

from core import decoding, machine


def best_step_ms(run, tokens: int, repeats: int = 3) -> float:
    run()  # warm-up: allocations and kernel choice
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times) / tokens * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="pocket/bases/pocket-seed0-float32", help="a Qwen2 model directory")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tokens", type=int, default=96, help="new tokens per row")
    args = p.parse_args()
    machine.use_own_cores()
    model = AutoModelForCausalLM.from_pretrained(args.base).eval()
    ids = torch.randint(10, 200, (args.batch, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        lean = best_step_ms(lambda: decoding.sample(model, ids, mask, max_new_tokens=args.tokens, temperature=1.0,
                                                    top_p=1.0, stop_ids=[], pad_id=0), args.tokens)
        hf = best_step_ms(lambda: model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.tokens,
                                                 min_new_tokens=args.tokens, do_sample=True, temperature=1.0,
                                                 top_p=1.0, pad_token_id=0), args.tokens)
    print(f"a decode step, batch {args.batch}, {torch.get_num_threads()} thread(s): HF generate {hf:.2f} ms, "
          f"lean sampler {lean:.2f} ms ({hf / lean:.2f}x)")


if __name__ == "__main__":
    main()
