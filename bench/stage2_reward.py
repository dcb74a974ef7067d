"""Stage-2 (reasoning RL) mean reward over training on configs/pocket.yaml: first 10% of steps vs
last 10%. Runs (or reuses) task_data -> base -> cold start -> reasoning RL in its own run.

    .venv/bin/python -m bench.stage2_reward [--recipe configs/pocket.yaml] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.config import load_recipe
from core.layout import LOG_HISTORY, MANIFEST
from core.runstore import RunStore
from core.trainers import reward_trend
from stages import runner

RESULTS = Path(__file__).parent / "results" / "stage2_reward.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="configs/pocket.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--run-id", default="bench-stage2")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    store = RunStore()
    rl = runner.build(["reasoning_rl"], recipe, store, args.run_id)["reasoning_rl"]
    history = json.loads((Path(rl.path) / LOG_HISTORY).read_text())
    trend = reward_trend(history)
    per_function = {name: reward_trend(history, f"rewards/{name}/mean")
                    for name in ("accuracy", "format", "language_consistency")}
    steps = len([h for h in history if "reward" in h])
    rl_wall = json.loads((Path(rl.path) / MANIFEST).read_text())["wall_s"]
    result = {"recipe": recipe.name, "run_id": args.run_id, "overrides": args.overrides, "steps": steps, **trend,
              "per_function": per_function, "reasoning_rl_wall_s": rl_wall}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"stage-2 mean reward over {result['steps']} steps ({recipe.name}):")
    print(f"  first 10% of steps: {trend['reward_first10']:.3f}   last 10%: {trend['reward_last10']:.3f}   "
          f"change: {trend['reward_last10'] - trend['reward_first10']:+.3f}")
    for name, t in per_function.items():
        if t:
            print(f"  {name:22} {t[f'rewards/{name}/mean_first10']:.3f} -> {t[f'rewards/{name}/mean_last10']:.3f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
