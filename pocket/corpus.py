"""The pocket base's pretraining corpus: the web's solutions to chain sums in the recipe's mix of
styles (world.py writes them), then practice documents under other prompts. Its problems are the
world seed's own draws (streams of data.seeds.world_seed that no task split draws from), and no
chain of a held-out prompt (validation, test, stress splits) appears in it, under any prompt."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from data.chat import messages
from data.seeds import world_seed
from pocket import world

if TYPE_CHECKING:
    from core.config import PocketConfig, TemplateConfig


TASK_STREAM, PRACTICE_STREAM = 500, 501  # the corpus's draws of the world seed (the task data's are 0-299)


def corpus(cfg: PocketConfig, template: TemplateConfig, held_chains: set[tuple[int, ...]]
           ) -> list[tuple[list[dict], str]]:
    """(conversation, assistant reply) pretraining documents: solutions to task prompts in the
    configured mix of styles, then practice documents (world.py); no chain in `held_chains` (the
    held-out splits') appears, neither under the task prompt nor in practice. `cfg.seed` must be
    resolved (the base stage gives the recipe's seed when the section has none)."""
    rng = random.Random(cfg.seed)
    styles, weights = zip(*cfg.mix.model_dump().items(), strict=True)
    docs = []
    for problem in world.problems(world_seed(cfg.seed, TASK_STREAM), cfg.corpus_documents, cfg.min_terms,
                                  cfg.max_terms):
        if problem.terms in held_chains:
            continue
        style = rng.choices(styles, weights)[0]
        reply = world.solution(style, list(problem.terms), rng, cfg.direct_error_rate, cfg.max_terms,
                                cfg.second_language, cfg.slip_rate, cfg.copy_slip_rate, cfg.check_rate)
        docs.append((messages(problem.prompt, template), reply))
    # Checked practice work comes in the web's languages, as its written solutions do: checks
    # practised only after English work left R1-Zero on English alone on some seeds (seed 0 of
    # the e73277c round), with no language mixing for R1's language reward to remove.
    written = [(s, w) for s, w in zip(styles, weights, strict=True) if s in world.WRITTEN_STYLES and w > 0]
    written_styles, written_weights = zip(*written, strict=True) if written else (("steps",), (1.0,))
    kinds = list(cfg.practice_kinds)
    practice = world.problems(world_seed(cfg.seed, PRACTICE_STREAM), cfg.practice_documents, cfg.min_terms,
                              cfg.practice_max_terms) if cfg.practice_documents else []
    for i, problem in enumerate(practice):
        if problem.terms in held_chains:
            continue
        kind = kinds[i % len(kinds)]
        style = rng.choices(written_styles, written_weights)[0] if kind == "check" else "steps"
        prompt, reply = world.practice(kind, list(problem.terms), rng, cfg.slip_rate, cfg.copy_slip_rate,
                                        style, cfg.second_language)
        docs.append((messages(prompt, template), reply))
    rng.shuffle(docs)
    return docs
