"""Loading the base model and the LoRA adapter that moves through every stage, and merging it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from core.config import LoraSettings
from core.runstore import Ref

log = logging.getLogger(__name__)
ADAPTER = "adapter"  # the adapter's sub-directory in a stage directory
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


def load_tokenizer(base: str | Path) -> Any:
    tok = AutoTokenizer.from_pretrained(str(base))
    if tok.pad_token is None:  # many base models ship without one; never pad with a real token id
        tok.pad_token = tok.eos_token
    return tok


def load_base(base: str | Path, dtype: str = "float32") -> Any:
    return AutoModelForCausalLM.from_pretrained(str(base), dtype=DTYPES[dtype])


def trainable_model(base: str | Path, adapter: Path | None, lora: LoraSettings, dtype: str = "float32") -> PeftModel:
    """The base with the stage's LoRA adapter: continued from `adapter`, or fresh when None."""
    model = load_base(base, dtype)
    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def inference_model(base: str | Path, adapter: Path | None = None, dtype: str = "float32") -> Any:
    """The base with the adapter merged in (fast generation), in eval mode."""
    model = load_base(base, dtype)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval()


def merge(base: str | Path, adapter: Path, out: Path, dtype: str = "float32") -> Path:
    """Merge the adapter into the base and save a plain HF model directory (model + tokenizer)."""
    model = inference_model(base, adapter, dtype)
    model.save_pretrained(out)
    load_tokenizer(base).save_pretrained(out)
    return out
