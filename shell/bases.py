"""`make base`: build the pocket bases the project ships and refresh pocket/bases/.

A real model's pipeline starts from a pretrained base someone else trained; the pocket world ships
its own, so a first run skips the pretraining. For each configuration below (the default recipe's
teacher base in each pretraining dtype `autocast: auto` can choose, and its distillation student),
this builds the stage in a scratch run (a base already in the run store's cache is taken from it),
then copies the base directory into pocket/bases/<name>/ with shipped.json: the content key it was
built under, the recipe, stage and overrides that rebuild it, the machine and the date. The base
stage finds a shipped base by the same key the cache uses, so a shipped base built by other code or
settings is never used; tests/test_shipped_bases.py fails as soon as the code no longer gives a
shipped base's key (run `make base` then).

    python -m shell.bases [--only NAME ...] [--list]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pocket
from core import machine
from core.config import load_recipe
from core.runstore import PROJECT_ROOT, RunStore
from stages import graph, runner


@dataclass(frozen=True)
class Shipped:
    name: str
    recipe: str
    stage: str  # the base stage that builds it: base or student_base
    overrides: tuple[str, ...] = ()

    @property
    def dtype(self) -> str | None:
        """The pretraining dtype its overrides pin (None: the recipe's own)."""
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith(("model.pocket.autocast=",
                                                                                  "distill.student.autocast="))), None)


SHIPPED = (
    Shipped("pocket-seed0-float32", "configs/pocket.yaml", graph.BASE, ("model.pocket.autocast=float32",)),
    Shipped("pocket-seed0-bfloat16", "configs/pocket.yaml", graph.BASE, ("model.pocket.autocast=bfloat16",)),
    Shipped("pocket-student-seed0", "configs/pocket.yaml", "student_base"),
    # bench-paper's other seeds (each on one core of its own, where this CPU's probe picks bfloat16):
    # without them the three-seed round pretrains two bases, ~11 min each, over its 60-minute budget
    Shipped("pocket-seed1-bfloat16", "configs/pocket.yaml", graph.BASE, ("seed=1", "model.pocket.autocast=bfloat16")),
    Shipped("pocket-seed2-bfloat16", "configs/pocket.yaml", graph.BASE, ("seed=2", "model.pocket.autocast=bfloat16")),
    Shipped("pocket-student-seed1", "configs/pocket.yaml", "student_base", ("seed=1",)),
    Shipped("pocket-student-seed2", "configs/pocket.yaml", "student_base", ("seed=2",)),
)


def expected_key(shipped: Shipped, store: RunStore | None = None) -> str:
    """The content key this code gives the shipped configuration (its task data is built to find the
    held-out prompts; nothing trains)."""
    from stages.base import held_out_prompts

    recipe = load_recipe(PROJECT_ROOT / shipped.recipe, list(shipped.overrides))
    store = store or RunStore(tempfile.mkdtemp(prefix="shipped-key-"))
    task_data = runner.build([graph.TASK_DATA], recipe, store, "shipped-key")[graph.TASK_DATA]
    cfg = recipe.model.pocket if shipped.stage == graph.BASE else recipe.distill.student
    if cfg.autocast == "auto":  # the key holds the dtype: what `auto` picks is this machine's business
        raise ValueError(f"{shipped.name}: a shipped base pins its pretraining dtype (autocast), got auto")
    cfg = cfg.model_copy(update={"seed": recipe.seed if cfg.seed is None else cfg.seed})
    return pocket.base_key(cfg, recipe.data.template, held_out_prompts(task_data))


def build(shipped: Shipped, store: RunStore) -> Path:
    """Build (or take from the cache) the shipped configuration's base; its directory in pocket/bases/."""
    recipe = load_recipe(PROJECT_ROOT / shipped.recipe, list(shipped.overrides))
    run_id = store.new_run_id(f"ship-{shipped.name}")
    ref = runner.build([shipped.stage], recipe, store, run_id)[shipped.stage]
    key = store.manifest(run_id, shipped.stage)["metrics"]["base_key"]
    out = pocket.SHIPPED / shipped.name
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(ref.path, out, ignore=shutil.ignore_patterns(".complete", pocket.SHIPPED_RECORD))
    (out / pocket.SHIPPED_RECORD).write_text(json.dumps({
        "key": key, "recipe": shipped.recipe, "stage": shipped.stage, "overrides": list(shipped.overrides),
        "built": dt.date.today().isoformat(), "machine": machine.machine(),
        "rebuild": "make base (python -m shell.bases)"}, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="shipped: " + ", ".join(s.name for s in SHIPPED))
    p.add_argument("--only", nargs="+", metavar="NAME", help="build only these (default: all)")
    p.add_argument("--list", action="store_true", help="list the shipped bases and whether each matches the code")
    args = p.parse_args(argv)
    machine.use_own_cores()
    chosen = [s for s in SHIPPED if not args.only or s.name in args.only]
    unknown = set(args.only or []) - {s.name for s in SHIPPED}
    if unknown:
        p.error(f"unknown shipped base(s) {sorted(unknown)}; expected some of {[s.name for s in SHIPPED]}")
    if args.list:
        for s in chosen:
            found = pocket.shipped_base(expected_key(s))
            print(f"{s.name:28} {'matches the code' if found else 'STALE or missing: make base'}")
        return 0
    store = RunStore()
    for s in chosen:
        if s.dtype == "bfloat16" and not machine.native_bf16():
            print(f"{s.name}: skipped: this CPU has no native bfloat16 (pretraining would emulate it, hours); "
                  "build it on one that has (AVX512-BF16 or AMX)", file=sys.stderr)
            continue
        print(f"{s.name}: {build(s, store)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
