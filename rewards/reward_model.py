"""The `reward_model` reward: a trained sequence classifier (stages/reward_model.py) judges answers that
no rule can verify.

As in the paper, helpfulness is judged on the final summary (the answer region, the text after
`</think>`) and harmlessness on the whole response (thinking included); with one classifier
trained on whole responses, that is the same model scoring the two views. The reward is their
mean. The classifier is loaded once per path and process.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from rewards.completions import column, prefilled_flags, text_of
from rewards.extract import THINK_OPEN, answer_region
from rewards.registry import reward

_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(path: str, version: int) -> tuple[Any, Any]:
    # torch and transformers load with the first scoring, so that building or validating rewards stays light
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not Path(path).is_dir():
        raise FileNotFoundError(f"reward model directory {path!r} not found; train it with the reward_model stage")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.truncation_side = "left"  # the score is read at the last token: keep the response's end
    # on the GPU, in bf16 (scores only rank completions within a group; the CPU keeps fp32)
    gpu = torch.cuda.is_available()
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.bfloat16 if gpu else torch.float32)
    model.to("cuda" if gpu else "cpu").eval()
    return model, tokenizer


def load(path: str | Path) -> tuple[Any, Any]:
    """(classifier, tokenizer) for a reward model directory, cached per path and version on disk."""
    path = Path(path).resolve()
    config = path / "config.json"
    # A retrained model (a forced rerun writes the same path) must not be served from the cache.
    version = config.stat().st_mtime_ns if config.is_file() else 0
    with _load_lock:
        return _load(str(path), version)


def _conversation_text(tokenizer: Any, prompt: Any, response: str) -> str:
    """The text the classifier was trained on: the chat template over prompt + assistant reply."""
    if isinstance(prompt, str):
        # A prompt already rendered by the chat template is continued as is (as TRL does);
        # a bare question becomes the user's turn.
        probe = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}], tokenize=False)
        if prompt.startswith(probe.split("\x00", 1)[0]) or prompt.rstrip().endswith(THINK_OPEN):
            if prompt.rstrip().endswith(THINK_OPEN) and response.startswith(THINK_OPEN):
                response = response[len(THINK_OPEN):]  # the prompt already opened the thinking
            return prompt + response
        prompt = [{"role": "user", "content": prompt}]
    conversation = [m for m in prompt if m.get("role") != "assistant"] if prompt else []
    return tokenizer.apply_chat_template(conversation + [{"role": "assistant", "content": response}], tokenize=False)


def score_texts(path: str | Path, prompts: list[Any], responses: list[str], batch_size: int = 32,
                max_length: int | None = None) -> list[float]:
    """The classifier's scalar score for each (prompt, response)."""
    import torch

    model, tokenizer = load(path)
    limit = max_length or getattr(model.config, "max_position_embeddings", None) or 1024
    texts = [_conversation_text(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=limit, add_special_tokens=False).to(model.device)
            scores.extend(model(**batch).logits[:, 0].float().tolist())
    return scores


@reward("reward_model", context=("reward_model_path",))
def reward_model(completions: list[Any], prompts: list[Any] | None = None, reward_model_path: str | None = None,
                 think_prefilled: bool | None = None, **kwargs: Any) -> list[float]:
    """Mean of the classifier's helpfulness (answer region) and harmlessness (whole response) scores.

    Args:
        reward_model_path: the trained model directory (`build(..., reward_model_path=...)` or params).
    """
    if not reward_model_path:
        raise ValueError("reward_model: no model path; pass build(..., reward_model_path=...) or params.reward_model_path")
    n = len(completions)
    prompt_list = column({"prompts": prompts}, "prompts", n)
    flags = prefilled_flags(prompts, n, think_prefilled)
    whole = [text_of(c) for c in completions]
    # With a pre-filled <think>, the reply the classifier saw in training opened with it.
    whole = [THINK_OPEN + t if f and THINK_OPEN not in t else t for t, f in zip(whole, flags, strict=True)]
    summary = [(answer_region(t) or "").strip() for t in whole]
    harmless = score_texts(reward_model_path, prompt_list, whole)
    helpful = score_texts(reward_model_path, prompt_list, summary)
    return [(a + b) / 2 for a, b in zip(helpful, harmless, strict=True)]
