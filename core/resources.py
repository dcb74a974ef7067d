"""Free disk before a stage writes: estimate what it will write and refuse to start when it won't fit.

Real runs write gigabytes per stage (a merged 1.5B model is ~6 GB in fp32, each GRPO checkpoint holds
the adapter plus twice its size in Adam state). A stage that fills the disk halfway through loses its
work, and may take the run store's other writes down with it; refusing up front costs nothing.

Estimates are upper bounds read from what is already on disk (the base model's files and config),
never by loading weights:

  * trainer stages (SFT / GRPO on a LoRA adapter): the adapter + one trainer checkpoint per kept
    checkpoint (`save_total_limit`, plus the one being written before the oldest is rotated out);
  * a merged model or a fully fine-tuned reward model: the base model's size;
  * the pocket base: its parameter count in fp32;
  * datasets, eval tables and manifests: a small constant.

On top of the estimate a margin stays free (default 1 GiB) so the rest of the machine keeps working:
set R1_DISK_MARGIN (bytes, or with a unit: 512M, 2G) to change it, 0 to turn the margin off.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARGIN_ENV = "R1_DISK_MARGIN"
DEFAULT_MARGIN = 1 << 30
# Datasets, eval tables, log histories and manifests of the stages that write no model.
SMALL_STAGE_BYTES = 64 << 20
# Adam keeps two moments per trainable parameter, in fp32 like the LoRA weights themselves.
OPTIMIZER_FACTOR = 2
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "special_tokens_map.json", "chat_template.jinja", "added_tokens.json")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# --- sizes -------------------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """'1073741824', '512M', '2G', '1.5g', '0' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r}: expected a size in bytes, optionally with a unit (K, M, G, T), e.g. 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def margin_bytes() -> int:
    """The free space every stage leaves untouched beyond its estimate (R1_DISK_MARGIN); ValueError
    naming the variable when it is not a size."""
    raw = os.environ.get(MARGIN_ENV)
    if raw is None:
        return DEFAULT_MARGIN
    try:
        return parse_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"{MARGIN_ENV}={exc}") from None


def free_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem that holds `path` (or would hold it: the nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def tree_bytes(path: str | Path) -> int:
    """Bytes of a file or everything below a directory (symlinks followed, as the HF cache uses them)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        return 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def model_dir(path: str | Path) -> Path | None:
    """The local directory of a model: the path itself, or a hub id's snapshot in the HF cache."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    try:
        # only hub ids need it; local paths are the common case
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(path), "config.json")
    except Exception:  # an id the hub library rejects: nothing local to measure
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _config(path: Path | None) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text()) if path else {}
    except (OSError, ValueError):
        return {}


# --- estimates per kind of stage ---------------------------------------------------------------


def model_bytes(path: str | Path) -> int:
    """On-disk size of a model directory (0 when it is a hub id not downloaded yet)."""
    where = model_dir(path)
    return tree_bytes(where) if where else 0


def lora_adapter_bytes(base: str | Path, r: int) -> int:
    """Upper bound of a LoRA adapter on every linear layer of the base (fp32): per layer q, k, v, o,
    gate, up, down each add r * (fan_in + fan_out) parameters, i.e. at most r * (11 h + 3 i)."""
    where = model_dir(base)
    cfg = _config(where)
    h, i, layers = cfg.get("hidden_size"), cfg.get("intermediate_size"), cfg.get("num_hidden_layers")
    if isinstance(h, int) and isinstance(i, int) and isinstance(layers, int):
        return r * (11 * h + 3 * i) * layers * 4
    # An architecture without these fields: a LoRA adapter is rarely above a tenth of its base.
    return model_bytes(base) // 10


def tokenizer_bytes(base: str | Path) -> int:
    where = model_dir(base)
    return sum(tree_bytes(where / name) for name in TOKENIZER_FILES) if where else 0


def trainer_stage_bytes(base: str | Path, r: int, save_total_limit: int) -> int:
    """An SFT / GRPO stage: the saved adapter and, while it trains, `save_total_limit` checkpoints plus
    the one being written (each: adapter, optimizer state, tokenizer copy)."""
    adapter, tok = lora_adapter_bytes(base, r), tokenizer_bytes(base)
    checkpoint = adapter * (1 + OPTIMIZER_FACTOR) + tok
    return adapter + tok + (save_total_limit + 1) * checkpoint + SMALL_STAGE_BYTES


def model_copy_bytes(base: str | Path) -> int:
    """A stage that writes a whole model the size of the base (merge, a fully trained reward model)."""
    return model_bytes(base) + SMALL_STAGE_BYTES


def pocket_bytes(cfg: Any) -> int:
    """The pocket base (a PocketConfig) saved in fp32: embeddings + layers, plus its tokenizer."""
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size + 16
    kv = h // cfg.num_heads * cfg.num_kv_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 4 * h
    return (v * h + cfg.num_layers * per_layer) * 4 + SMALL_STAGE_BYTES
