"""Loading the base model and the LoRA adapter that moves through every stage, and merging it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from core.config import LoraSettings
from core.layout import ADAPTER
from core.runstore import Ref

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


class ModelError(ValueError):
    """A model path that cannot be used; names the path and what was expected."""


def check_causal_lm(path: str) -> None:
    """Fail early, with the path in the message, when `path` is not a causal LM we can load."""
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise ModelError(f"model {path!r}: not a model directory or hub id with a config.json ({exc})") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(f"model {path!r}: model_type {config.model_type!r} is not a causal language model "
                         f"(expected e.g. qwen2, llama, mistral)")


def adapter_path(ref: Ref) -> Path:
    """The adapter of a stage (its adapter/ sub-directory) or an imported adapter directory itself."""
    path = Path(ref.path)
    return path / ADAPTER if (path / ADAPTER).is_dir() else path


def accelerator() -> torch.device:
    """Where models run in this process: its first visible GPU, else the CPU."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def end_of_turn(tok: Any) -> str | None:
    """The token the chat template closes an assistant turn with (ChatML's <|im_end|>, Llama 3's
    <|eot_id|>), or None when the template closes turns with no single token of the vocabulary."""
    if not getattr(tok, "chat_template", None):
        return None
    mark = "\x00END\x00"
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": mark}],
                                       tokenize=False)
    except (TemplateError, ValueError, TypeError):  # a template that wants another conversation shape
        return None
    after = text.split(mark, 1)[1].strip() if mark in text else ""
    if not after:
        return None
    first = tok(after, add_special_tokens=False)["input_ids"][:1]
    token = tok.convert_ids_to_tokens(first[0]) if first else None
    # only a token of its own (special or added), never the first piece of ordinary text
    return token if token and token in tok.get_added_vocab() else None


def load_tokenizer(base: str | Path, eos_token: str | None = None) -> Any:
    """The base's tokenizer with its EOS set to where a completion ends: `eos_token` (the recipe's
    model.eos_token) or the chat template's end-of-turn token. A base model's own EOS
    (Qwen2.5 base: <|endoftext|>) is not what ends a chat turn, so samplers and trainers that stop
    at it run past the answer; TRL and our generate stop at tokenizer.eos_token."""
    tok = AutoTokenizer.from_pretrained(str(base))
    if tok.pad_token is None:  # many base models ship without one; never pad with a real token id
        tok.pad_token = tok.eos_token
    stop = eos_token or end_of_turn(tok)
    if stop and stop != tok.eos_token:
        if stop not in tok.get_vocab():
            raise ModelError(f"model {str(base)!r}: eos_token {stop!r} is not a token of its tokenizer")
        tok.eos_token = stop
    return tok


def stop_token_ids(tokenizer: Any, model: Any | None = None) -> list[int]:
    """Every token id that ends a completion: the tokenizer's EOS (the end of turn) and the model's
    own EOS ids (a base model may still emit its document end)."""
    ids = [tokenizer.eos_token_id]
    own = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += own if isinstance(own, list) else [own] if own is not None else []
    return list(dict.fromkeys(i for i in ids if i is not None))


def load_base(base: str | Path, dtype: str = "float32", device: torch.device | str | None = None) -> Any:
    """The base model in `dtype`, on `device` (None: left on the CPU, where a Trainer takes it over)."""
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=DTYPES[dtype])
    return model if device is None else model.to(device)


def trainable_model(base: str | Path, adapter: Path | None, lora: LoraSettings, dtype: str = "float32",
                    seed: int = 0) -> PeftModel:
    """The base with the stage's LoRA adapter: continued from `adapter`, or fresh when None, its
    random init drawn from `seed` (not from whatever the process drew before: same inputs, same adapter)."""
    model = load_base(base, dtype)
    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def inference_model(base: str | Path, adapter: Path | None = None, dtype: str = "float32",
                    device: torch.device | str | None = None) -> Any:
    """The base with the adapter merged in (fast generation), in eval mode, on `device` (default:
    this process's accelerator; `generate` follows model.device)."""
    model = load_base(base, dtype, device or accelerator())
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval()


def merge(base: str | Path, adapter: Path, out: Path, dtype: str = "float32", eos_token: str | None = None) -> Path:
    """Merge the adapter into the base and save a plain HF model directory (model + tokenizer)."""
    model = inference_model(base, adapter, dtype, device="cpu")  # merging is cheap; the GPU stays free
    tokenizer = load_tokenizer(base, eos_token)
    # the saved model stops where the pipeline's samplers did, in any HF or vLLM loader
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
