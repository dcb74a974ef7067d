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

from core.runstore import PROJECT_ROOT
from core.stage import module_code_version
from pocket.cold_start import cold_start_rows, exemplars
from pocket.general import general_rows
from pocket.preferences import preference_pairs
from pocket.pretrain import build as build_base
from pocket.report import base_report, format_base_report
from rewards.completions import prompt_key

if TYPE_CHECKING:
    from core.config import PocketConfig, TemplateConfig

__all__ = ["base_key", "base_report", "build_base", "cold_start_rows", "exemplars", "format_base_report",
           "general_rows", "preference_pairs"]


def base_key(cfg: PocketConfig, template: TemplateConfig, heldout_prompts: list[str],
             root: Path = PROJECT_ROOT) -> str:
    """The content key of a pocket base: its config, the template, the held-out prompts kept out of
    its corpus, and the code that builds it (pretrain.py and everything it imports; `root`: where
    the sources are read, for tests)."""
    return module_code_version("pocket.pretrain", root=root, extra={
        "config": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        "template": json.dumps(template.model_dump(mode="json"), sort_keys=True),
        "heldout": json.dumps(sorted(prompt_key(p) for p in heldout_prompts)),
    })[:20]
