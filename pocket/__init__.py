"""The pocket world: the embedded default, a tiny base model this project builds itself.

Chain sums (reasoning-gym's `chain_sum`) written up the way a web corpus would (world.py): mostly
direct answers, sometimes worked solutions that slip now and then, a few that check their work, and
practice documents under other prompts. A byte-level BPE tokenizer and a 0.8M-parameter Qwen2 are
trained on it from scratch (corpus.py, tokenizer.py, pretrain.py). Its general (non-reasoning)
tasks and their preference pairs feed the reward model and stage 3's general share (general.py,
preferences.py); its oracle writes the `generated` cold start and the few-shot exemplars
(cold_start.py). What it showed, and how it was designed: docs/pocket-world.md.

The stages use it only through this interface (lint-imports: the modules below are private to the
package, but `world`, the vocabulary of the world that benches and tests read):
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from core.layout import PRETRAINING
from core.machine import DtypeChoice, autocast_dtype
from core.runstore import PROJECT_ROOT
from core.stage import module_code_version
from pocket import pretrain, world
from pocket.cold_start import cold_start_rows, exemplars
from pocket.general import general_rows
from pocket.preferences import preference_pairs
from pocket.pretrain import probe_step
from pocket.report import base_report, format_base_report

if TYPE_CHECKING:
    from core.config import PocketConfig, TemplateConfig

__all__ = ["SHIPPED", "base_key", "base_report", "build_base", "cold_start_rows", "compute_dtype", "exemplars",
           "format_base_report", "general_rows", "held_chains", "preference_pairs", "shipped_base"]

# Pretrained bases shipped with the project (`make base` builds and refreshes them), each in a folder
# with the weights, the tokenizer and shipped.json: the key it was built under and how to rebuild it.
SHIPPED = Path(__file__).resolve().parent / "bases"
SHIPPED_RECORD = "shipped.json"


def compute_dtype(cfg: PocketConfig, cache: Path | None = None) -> DtypeChoice:
    """The pretraining loop's dtype for `cfg` on this machine (`cfg.autocast` resolved when "auto"; a
    probe of its shapes decides, remembered in `cache`)."""
    shape = {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size", "num_layers", "num_heads",
                                          "num_kv_heads", "batch_size", "block_size", "vocab_size")}
    if cfg.autocast != "auto":
        return autocast_dtype(cfg.autocast, lambda dtype: None, shape)
    return autocast_dtype("auto", probe_step(cfg), shape, cache)


def held_chains(prompts: list[str]) -> set[tuple[int, ...]]:
    """The chains of these prompts (the held-out splits'): what no corpus document may contain."""
    return {chain for p in prompts if (chain := world.chain_of(p)) is not None}


def build_base(cfg: PocketConfig, template: TemplateConfig, held_out: list[str], out: Path) -> None:
    """Build the pocket base for `cfg` (seed and dtype resolved) into `out`, its corpus free of the
    chains of the `held_out` prompts; the pretraining's record beside it (pretraining.json)."""
    record = pretrain.build(cfg, template, held_chains(held_out), out)
    (out / PRETRAINING).write_text(json.dumps(record, indent=2))


def shipped_base(key: str) -> Path | None:
    """The shipped base built under `key`, if the project ships one (a base is found by the same
    content key the cache uses: a stale shipped base never matches changed code or settings)."""
    for record in sorted(SHIPPED.glob(f"*/{SHIPPED_RECORD}")):
        if json.loads(record.read_text()).get("key") == key:
            return record.parent
    return None


def base_key(cfg: PocketConfig, template: TemplateConfig, held_out: list[str], root: Path = PROJECT_ROOT) -> str:
    """The content key of a pocket base: its config (seed and dtype resolved), the template, the
    held-out prompts whose chains its corpus leaves out, and the code that builds it (pretrain.py and
    everything it imports; `root`: where the sources are read, for tests)."""
    return module_code_version("pocket.pretrain", root=root, extra={
        "config": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        "template": json.dumps(template.model_dump(mode="json"), sort_keys=True),
        "held_out": json.dumps(sorted(held_chains(held_out))),
    })[:20]
