"""`r1`: the command line of r1-pipeline.

  r1 pipeline --recipe configs/pocket.yaml     run the pipeline on a recipe
  r1 r1-zero --recipe configs/pocket.yaml      run R1-Zero (GRPO straight from the base)
  r1 distill --recipe configs/pocket.yaml      distil the teacher's samples into the student
  r1 evaluate --model DIR [--adapter DIR]      evaluate any model / adapter on the test split
  r1 report RUN_ID                             write the run's report (PNG plots + index.md)
  r1 runs                                      list runs in the run store
  r1 lineage RUN_ID                            show what each stage of a run was built from
  r1 dry-run --recipe configs/X.yaml           validate a recipe and print its plan (no weights loaded)
  r1 doctor [--recipe configs/X.yaml]          check versions, device, disk, Prefect server and W&B mode
                                               (and the recipe's workers' environment and vLLM servers)

A mistake in a recipe, override or data file prints its message and exits with status 2; --debug
(or R1_DEBUG=1) also prints the traceback. Ctrl-C stops a run and prints how to resume it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import traceback

import pocket
from core import machine
from core.config import load_recipe
from core.runstore import PROJECT_ROOT, RunStore
from flows.report import build_report, eval_results
from flows.user_errors import DEBUG_ENV, debug, user_error
from shell import doctor, estimate, interrupts
from shell.plan import dry_run
from stages import graph, preflight, runner
from stages.evaluation import format_table, import_adapter, load_results


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="configs/pocket.yaml",
                   help="recipe YAML, or a name in configs/ (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set model.pocket.steps=100 (repeatable)")
    p.add_argument("--run-id", help="continue this run (finished stages are reused); default: a new run")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rebuild STAGE even if it is unchanged (repeatable; 'all' for every stage). Stages: "
                        f"{', '.join(graph.BY_NAME)}, and eval_<stage> for an evaluation")


COMMANDS = {spec.command: spec for spec in graph.FLOWS.values()}  # `r1 <command>` -> the flow it runs


def _flow(name: str):
    # Imported here, after the settings in cmd_flow: importing Prefect reads them and installs its
    # logging handlers, which the other commands do not need.
    from flows.training import FLOWS

    return FLOWS[name]


def resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The command line that resumes this run: same command, recipe and overrides, this run id."""
    words = ["r1", args.command, "--recipe", args.recipe]
    for override in args.overrides:
        words += ["--set", override]
    return shlex.join([*words, "--run-id", run_id])


def cmd_flow(args: argparse.Namespace) -> int:
    """A Prefect flow (pipeline, r1-zero, distill), called directly (no server or worker needed),
    then the eval table. Ctrl-C or SIGTERM stops it and prints how to resume."""
    # Prefect's local state (its temporary server's SQLite database) stays in the project by default.
    os.environ.setdefault("PREFECT_HOME", str(PROJECT_ROOT / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    # A config error stops here, before Prefect starts and before a run directory exists; the flow
    # gets the recipe as loaded here.
    recipe = preflight.load_checked(args.recipe, args.overrides)
    store = RunStore()
    costs = estimate.calibrate(recipe)  # a few operations timed here: the plan's walls on this machine
    if costs is not None:
        rows = estimate.estimates(COMMANDS[args.command], recipe, costs, store, args.run_id)
        print(estimate.format_estimates(rows, costs, machine.machine()) + "\n", flush=True)
    run_id = args.run_id or store.new_run_id(recipe.name)  # chosen here so an interrupt can name it
    interrupts.install()
    flow = _flow(COMMANDS[args.command].name)
    try:
        out = flow(recipe=recipe, run_id=run_id, force=args.force)
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished stages are kept, the stopped one resumes from its last checkpoint: "
              f"{resume_command(args, run_id)}", file=sys.stderr)
        return interrupts.EXIT_INTERRUPTED
    print(f"\nrun {out['run_id']}  (store {store.root})\n")
    base_metrics = (store.manifest(out["run_id"], graph.BASE) or {}).get("metrics", {})
    if "task" in base_metrics:  # the pocket base's report
        print(pocket.format_base_report(base_metrics) + "\n")
    print(format_table(eval_results(store, out["run_id"])))
    print(f"\nreport: {out['report']}\nlineage: r1 lineage {out['run_id']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate any HF model directory, merged model or PEFT adapter on the recipe's test split (and stress splits)."""
    overrides = args.overrides + ([f"model.base={args.model}"] if args.model else [])
    recipe = load_recipe(args.recipe, overrides)  # the training stages' checks do not apply
    store = RunStore()
    run_id = args.run_id or store.new_run_id(f"eval-{recipe.name}")
    name = args.name or ("adapter" if args.adapter else "model")
    spec = graph.evaluation_spec(name, adapter_stage="adapter_import" if args.adapter else None)
    given = {"adapter_import": import_adapter(store, run_id, args.adapter)} if args.adapter else {}
    ref = runner.build([spec], recipe, store, run_id, given, force=[spec.name] if args.force else [])[spec.name]
    results = load_results(ref)
    print(format_table({name: results}))
    for task, m in results["per_task"].items():
        print(f"  {task}: pass@1 {m['pass_at_1']:.3f}, cons@{results['k']} {m['cons_at_k']:.3f}, "
              f"greedy {m['greedy_accuracy']:.3f} ({m['prompts']} prompts)")
    print(f"\nresults: {ref.path}/eval.json")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    store = RunStore()
    if not store.stages(args.run_id):
        print(f"run {args.run_id!r} has no finished stages in {store.root}", file=sys.stderr)
        return 1
    print(build_report(store, args.run_id))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    runs = RunStore().runs()
    if not runs:
        print("no runs yet")
    for r in runs:
        print(f"{r['run_id']:40} {r['updated']:26} {' -> '.join(r['stages']) or '(nothing finished)'}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    store = RunStore()
    lines = store.lineage(args.run_id)
    if not lines:
        print(f"run {args.run_id!r} has no finished stages in {store.root}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if args.json:
        print(json.dumps(store.stages(args.run_id), indent=2))
    return 0


def cmd_dry_run(args: argparse.Namespace) -> int:
    """Validate a recipe and print its plan; loads no weights and no data."""
    print(dry_run(args.recipe, args.overrides))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the machine's readiness report; exit 1 when a check fails."""
    checks = doctor.CHECKS + doctor.recipe_checks(load_recipe(args.recipe, args.overrides))
    findings = doctor.run_checks(checks)
    print(doctor.format_report(findings))
    return doctor.exit_status(findings)


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help=f"print the traceback of a recipe, data or model error too (or set {DEBUG_ENV}=1)")
    parser = argparse.ArgumentParser(prog="r1", description="r1-pipeline: the DeepSeek-R1 recipe as Prefect flows.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command, spec in COMMANDS.items():
        p = sub.add_parser(command, help=spec.doc, description=f"{spec.doc} (the {spec.name} flow)", parents=[common])
        _recipe_args(p)
        p.set_defaults(func=cmd_flow)
    p = sub.add_parser("evaluate", parents=[common], help="evaluate a model directory, merged model or adapter on the test split",
                       description="pass@1 (k samples), cons@k, greedy accuracy, length, language consistency "
                                   "and reflection words on the recipe's test split, pass@1 on its stress splits (eval.* settings).")
    p.add_argument("--recipe", default="configs/pocket.yaml", help="recipe for the tasks and eval settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set eval.samples=16 (repeatable)")
    p.add_argument("--model", help="HF model directory or hub id (default: the recipe's base)")
    p.add_argument("--adapter", help="PEFT adapter directory to apply on the model")
    p.add_argument("--name", help="name of this evaluation in the run (default: model / adapter)")
    p.add_argument("--run-id", help="the run to evaluate in (default: a new one)")
    p.add_argument("--force", action="store_true", help="re-evaluate even if unchanged")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("report", parents=[common], help="(re)build a run's report: runs/RUN_ID/report/index.md and PNG plots")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("runs", parents=[common], help="list the runs in the run store")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("lineage", parents=[common], help="show what each stage of a run was built from")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="also print the full manifests")
    p.set_defaults(func=cmd_lineage)
    p = sub.add_parser("dry-run", parents=[common], help="validate a recipe and print its plan (stages, steps, generations, tokens)")
    p.add_argument("--recipe", default="configs/pocket.yaml", help="recipe YAML, or a name in configs/")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (repeatable)")
    p.set_defaults(func=cmd_dry_run)
    p = sub.add_parser("doctor", parents=[common], help="check versions, device, free disk, the Prefect server and W&B mode")
    p.add_argument("--recipe", default="configs/pocket.yaml",
                   help="the recipe whose pocket base dtype, workers' environment and vLLM servers to check "
                        "(default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (repeatable)")
    p.set_defaults(func=cmd_doctor)
    args = parser.parse_args(argv)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # also read by the Prefect log filter (flows/user_errors.py)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    machine.use_own_cores()  # as many torch threads as this process has cores (its CPU affinity)
    try:
        return args.func(args)
    except Exception as exc:
        if user_error(exc) is None:
            raise  # a bug: its traceback is what to report
        if debug():
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
