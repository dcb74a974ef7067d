"""The ablation lab: the R1 follow-up papers' claims about R1-Zero-style training, each tested as an
arm of R1-Zero runs on the pocket world, side by side over seeds, where every knob of the world is
known (how often its corpus checks, slips, answers at once).

    arms.py     the arms: each names the claim it tests, its metric and the criterion that confirms or
                refutes it, written down before anything runs, and the recipe overrides of its variants
    measure.py  what a finished variant measured: its evaluation, its per-step training log, its
                rollouts (rollouts.jsonl), and the step-0 audit of the base
    flow.py     the `lab` Prefect flow: one seed's variants, each a run of its own on the seed's base
    __main__.py `make lab` / `python -m lab`: seeds side by side, then lab.json, lab.md and plots
"""
