"""The arms of the ablation lab, written down before anything runs: for each, the claim (and the paper
that made it), what is measured, and the criterion that confirms or refutes it on the pocket world.

Every training variant is R1-Zero on the recipe (configs/pocket.yaml: accuracy + format rewards,
TRL's `dapo` loss, beta 0, one gradient step per generation, 60 steps) with a few overrides; the
`reference` variant has none. A variant's measures (lab/measure.py, per seed): test pass@1 and
pass@k (k=16 samples), longer-split pass@1, and per GRPO step the policy's entropy, clip ratios,
KL, rollout length and accuracy, the share of rollouts that write their work out or check it, and
the length of wrong minus right rollouts at equal chain length. "Every seed" is seeds 0-2, each its
own world. A verdict is `confirmed`, `refuted` or `inconclusive`, printed whatever it is. Beside
it each arm reports its figures over the seeds: a difference in pass@k as the mean over seeds and
test prompts (paired by prompt) with its 95% bootstrap interval, resampling seeds then prompts; a
per-step figure as its mean and the seeds' range. The criteria were written before the first run
and read the per-seed figures; the intervals are reported, not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from core.stats import bootstrap_seeds, pass_at_k

# the lab's settings on top of the recipe, for every training variant: rollouts saved for the
# analyses, the test and longer splits evaluated at k=16 for R1-Zero only
COMMON = ("r1_zero.log_rollouts=true", "eval.samples=16", "eval.prompts=null", "eval.stress_stages=[r1_zero]")
AUDIT_K = 64  # samples per test prompt for the step-0 audit and pass@k


@dataclass(frozen=True)
class Variant:
    """An R1-Zero run: its name and its recipe overrides (a `model.pocket.*` override builds a base of
    its own; every other variant trains on the seed's shared base)."""

    name: str
    overrides: tuple[str, ...] = ()

    @property
    def own_base(self) -> bool:
        return any(o.startswith("model.pocket.") for o in self.overrides)


REFERENCE = Variant("reference")

# Measures of a variant on one seed (lab/measure.py): seed -> variant -> figures.
BySeed = Mapping[int, Mapping[str, Mapping[str, Any]]]
# a judge gives the verdict, the figures per seed and the figures over the seeds
Judge = Callable[[BySeed], tuple[str, str, str]]


@dataclass(frozen=True)
class Arm:
    name: str
    claim: str
    source: str
    metric: str
    criterion: str
    judge: Judge
    variants: tuple[Variant, ...] = ()  # besides the reference, which every training arm compares with
    audit: bool = False  # needs the step-0 audit (the base and the reference sampled k=64)
    uses: tuple[str, ...] = field(default=("reference",))


def _every(by_seed: BySeed, test: Callable[[Mapping[str, Mapping[str, Any]]], bool]) -> bool:
    return all(test(v) for v in by_seed.values())


def _none(by_seed: BySeed, test: Callable[[Mapping[str, Mapping[str, Any]]], bool]) -> bool:
    return not any(test(v) for v in by_seed.values())


def _verdict(confirmed: bool, refuted: bool) -> str:
    return "confirmed" if confirmed else "refuted" if refuted else "inconclusive"


def _per_seed(by_seed: BySeed, fmt: Callable[[Mapping[str, Mapping[str, Any]]], str]) -> str:
    return "; ".join(f"seed {s}: {fmt(v)}" for s, v in sorted(by_seed.items()))


def _interval(per_seed: list[list[float]], fmt: str = "{:+.3f}") -> str:
    """The mean over seeds of per-prompt figures, with its 95% interval (seeds, then prompts resampled)."""
    lo, hi = bootstrap_seeds(per_seed)
    return f"{fmt.format(fmean(fmean(v) for v in per_seed))} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _pass(v: Mapping[str, Any], variant: str, k: int = 1) -> list[float]:
    """A variant's pass@k per test prompt, from its right samples."""
    return [pass_at_k(v[variant]["samples"], c, k) for c in v[variant]["right_by_prompt"]]


def _audit_pass(v: Mapping[str, Any], model: str, k: int) -> list[float]:
    """The step-0 audit's pass@k per test prompt for `base` or `r1_zero`."""
    return [pass_at_k(v["audit"]["k"], c, k) for c in v["audit"]["right_by_prompt"][model]]


def paired(by_seed: BySeed, a: Callable[[Any], list[float]], b: Callable[[Any], list[float]]) -> str:
    """a minus b prompt by prompt (a, b: a seed's figures per test prompt), over the seeds, with its interval."""
    return _interval([[x - y for x, y in zip(a(v), b(v), strict=True)] for v in by_seed.values()])


def spread(by_seed: BySeed, figure: Callable[[Any], float], fmt: str = "{:+.3f}") -> str:
    """A per-seed figure's mean over the seeds and their range."""
    values = [figure(v) for v in by_seed.values()]
    return f"{fmt.format(fmean(values))} (seeds {fmt.format(min(values))} to {fmt.format(max(values))})"


# --- the judges --------------------------------------------------------------------------------


def judge_reflection(by_seed: BySeed) -> tuple[str, str]:
    def checks(v):
        return v["audit"]["base"]["task"]

    present = _every(by_seed, lambda v: checks(v)["checked"] >= 0.01)
    shallow = _every(by_seed, lambda v: checks(v)["outcomes"]["caught"] <= checks(v)["outcomes"]["broke"]
                     + checks(v)["outcomes"]["missed"])
    text = _per_seed(by_seed, lambda v: (
        f"base checks {checks(v)['checked']:.1%} of task answers ({v['audit']['base']['practice']['checked']:.0%} on "
        f"the practice prompt); its checks caught {checks(v)['outcomes']['caught']}, broke "
        f"{checks(v)['outcomes']['broke']}, missed {checks(v)['outcomes']['missed']}, confirmed "
        f"{checks(v)['outcomes']['confirmed']}"))
    total = {o: sum(checks(v)["outcomes"][o] for v in by_seed.values()) for o in ("caught", "broke", "missed")}
    pooled = (f"base checks {_interval([checks(v)['checked_by_prompt'] for v in by_seed.values()], '{:.1%}')} of "
              f"task answers; its checks caught {total['caught']} slips, broke {total['broke']} right answers, "
              f"missed {total['missed']} slips")
    return _verdict(present and shallow, _none(by_seed, lambda v: checks(v)["checked"] >= 0.01)), text, pooled


def judge_reach(by_seed: BySeed) -> tuple[str, str]:
    def gap(v):
        return v["audit"]["pass_at_k"]["r1_zero"][str(AUDIT_K)] - v["audit"]["pass_at_k"]["base"][str(AUDIT_K)]

    text = _per_seed(by_seed, lambda v: (
        f"pass@1 base {v['audit']['pass_at_k']['base']['1']:.3f} -> R1-Zero {v['audit']['pass_at_k']['r1_zero']['1']:.3f}, "
        f"pass@{AUDIT_K} {v['audit']['pass_at_k']['base'][str(AUDIT_K)]:.3f} -> "
        f"{v['audit']['pass_at_k']['r1_zero'][str(AUDIT_K)]:.3f} ({gap(v):+.3f})"))
    pooled = (f"R1-Zero minus base: pass@1 {paired(by_seed, lambda v: _audit_pass(v, 'r1_zero', 1), lambda v: _audit_pass(v, 'base', 1))}"
              f", pass@{AUDIT_K} {paired(by_seed, lambda v: _audit_pass(v, 'r1_zero', AUDIT_K), lambda v: _audit_pass(v, 'base', AUDIT_K))}")
    return _verdict(_every(by_seed, lambda v: gap(v) <= 0.02), _every(by_seed, lambda v: gap(v) >= 0.05)), text, pooled


def judge_dr_grpo(by_seed: BySeed) -> tuple[str, str]:
    def gap(v, name):
        return v[name]["final"]["length_gap"]

    text = _per_seed(by_seed, lambda v: (
        f"wrong minus right length (equal chain length, last quarter of rollouts): grpo {gap(v, 'grpo'):+.1f}, "
        f"dr_grpo {gap(v, 'dr_grpo'):+.1f}, dapo {gap(v, 'reference'):+.1f} tokens; test pass@1 grpo "
        f"{v['grpo']['pass_at_1']:.3f}, dr_grpo {v['dr_grpo']['pass_at_1']:.3f}, dapo {v['reference']['pass_at_1']:.3f}"))
    confirmed = _every(by_seed, lambda v: gap(v, "grpo") > 0 and gap(v, "grpo") - gap(v, "dr_grpo") > 0)
    refuted = _every(by_seed, lambda v: gap(v, "grpo") - gap(v, "dr_grpo") <= 0)
    pooled = (f"wrong minus right length under grpo {spread(by_seed, lambda v: gap(v, 'grpo'), '{:+.1f}')} tokens, "
              f"grpo minus dr_grpo {spread(by_seed, lambda v: gap(v, 'grpo') - gap(v, 'dr_grpo'), '{:+.1f}')}; "
              f"pass@1 dr_grpo minus grpo {paired(by_seed, lambda v: _pass(v, 'dr_grpo'), lambda v: _pass(v, 'grpo'))}")
    return _verdict(confirmed, refuted), text, pooled


def judge_format(by_seed: BySeed) -> tuple[str, str]:
    def switch(v, name):
        return v[name]["written_switch_step"]

    text = _per_seed(by_seed, lambda v: (
        f"written work in half the rollouts from step {switch(v, 'reference')} with the format reward, "
        f"{switch(v, 'no_format')} without; test pass@1 {v['reference']['pass_at_1']:.3f} vs "
        f"{v['no_format']['pass_at_1']:.3f}"))
    confirmed = _every(by_seed, lambda v: switch(v, "no_format") is not None
                       and v["no_format"]["pass_at_1"] >= v["reference"]["pass_at_1"] - 0.02)
    refuted = _every(by_seed, lambda v: switch(v, "no_format") is None)
    switched = [v for v in by_seed.values() if switch(v, "no_format") is not None and switch(v, "reference") is not None]
    later = (f"the switch {fmean(switch(v, 'no_format') - switch(v, 'reference') for v in switched):+.0f} steps later "
             f"without it ({len(switched)} of {len(by_seed)} seeds switch both ways)" if switched
             else "no seed switches both ways")
    pooled = (f"{later}; pass@1 without minus with the format reward "
              f"{paired(by_seed, lambda v: _pass(v, 'no_format'), lambda v: _pass(v, 'reference'))}")
    return _verdict(confirmed, refuted), text, pooled


def final(v: Mapping[str, Mapping[str, Any]], variant: str, key: str) -> Any:
    """A variant's figure over the last quarter of its GRPO steps."""
    return v[variant]["final"][key]


def judge_clip_higher(by_seed: BySeed) -> tuple[str, str]:
    text = _per_seed(by_seed, lambda v: (
        f"entropy (last quarter) {final(v, 'clip_0.20', 'entropy'):.3f} at epsilon_high 0.2 vs "
        f"{final(v, 'clip_0.28', 'entropy'):.3f} at 0.28 (high clip ratio {final(v, 'clip_0.28', 'clip_high'):.4f}); "
        f"pass@16 {v['clip_0.20']['pass_at_k']['16']:.3f} vs {v['clip_0.28']['pass_at_k']['16']:.3f}; longer pass@1 "
        f"{v['clip_0.20']['longer_pass_at_1']:.3f} vs {v['clip_0.28']['longer_pass_at_1']:.3f}"))
    confirmed = _every(by_seed, lambda v: final(v, "clip_0.28", "entropy") > final(v, "clip_0.20", "entropy")
                       and final(v, "clip_0.28", "clip_high") > 0)
    # a clip that never binds leaves the two variants the same run (to float noise): that tests nothing
    refuted = _every(by_seed, lambda v: final(v, "clip_0.28", "entropy") <= final(v, "clip_0.20", "entropy")
                     and final(v, "clip_0.28", "clip_high") > 0)
    pooled = (f"entropy at 0.28 minus 0.2 {spread(by_seed, lambda v: final(v, 'clip_0.28', 'entropy') - final(v, 'clip_0.20', 'entropy'))}; "
              f"high clip ratio at most {max(final(v, 'clip_0.28', 'clip_high') for v in by_seed.values()):.4f}; "
              f"pass@16 0.28 minus 0.2 {paired(by_seed, lambda v: _pass(v, 'clip_0.28', 16), lambda v: _pass(v, 'clip_0.20', 16))}")
    return _verdict(confirmed, refuted), text, pooled


def judge_kl(by_seed: BySeed) -> tuple[str, str]:
    def p1(v, name):
        return v[name]["pass_at_1"]

    text = _per_seed(by_seed, lambda v: (
        f"test pass@1 beta 0 {p1(v, 'reference'):.3f}, 0.001 {p1(v, 'beta_0.001'):.3f}, 0.04 {p1(v, 'beta_0.04'):.3f}; "
        f"rollout length (last quarter) {v['reference']['final']['length']:.0f} / {v['beta_0.001']['final']['length']:.0f}"
        f" / {v['beta_0.04']['final']['length']:.0f}"))
    best_kl = lambda v: max(p1(v, "beta_0.001"), p1(v, "beta_0.04"))  # noqa: E731
    pooled = (f"pass@1 beta 0 minus 0.001 {paired(by_seed, lambda v: _pass(v, 'reference'), lambda v: _pass(v, 'beta_0.001'))}, "
              f"minus 0.04 {paired(by_seed, lambda v: _pass(v, 'reference'), lambda v: _pass(v, 'beta_0.04'))}")
    return _verdict(_every(by_seed, lambda v: p1(v, "reference") >= best_kl(v) - 0.02),
                    _every(by_seed, lambda v: p1(v, "reference") < best_kl(v) - 0.05)), text, pooled


def judge_no_checks(by_seed: BySeed) -> tuple[str, str]:
    text = _per_seed(by_seed, lambda v: (
        f"rollouts with a reflection word (last quarter): {final(v, 'no_checks', 'reflected'):.1%} in the world "
        f"without checks vs {final(v, 'reference', 'reflected'):.1%}; with a written check "
        f"{final(v, 'no_checks', 'checked'):.1%} vs {final(v, 'reference', 'checked'):.1%}; test pass@1 "
        f"{v['no_checks']['pass_at_1']:.3f} vs {v['reference']['pass_at_1']:.3f} (what checking is worth: "
        f"{v['reference']['pass_at_1'] - v['no_checks']['pass_at_1']:+.3f})"))
    confirmed = _every(by_seed, lambda v: final(v, "no_checks", "reflected") >= 0.1)
    refuted = _every(by_seed, lambda v: final(v, "no_checks", "reflected") < 0.01
                     and final(v, "reference", "reflected") >= 0.1)
    pooled = (f"reflecting rollouts (last quarter) {spread(by_seed, lambda v: final(v, 'no_checks', 'reflected'), '{:.1%}')} "
              f"without checks vs {spread(by_seed, lambda v: final(v, 'reference', 'reflected'), '{:.1%}')}; what checking "
              f"is worth in pass@1 {paired(by_seed, lambda v: _pass(v, 'reference'), lambda v: _pass(v, 'no_checks'))}")
    return _verdict(confirmed, refuted), text, pooled


NO_CHECKS = ("model.pocket.check_rate=0", "model.pocket.practice_kinds=[reduce]")

ARMS = (
    Arm("reflection_at_step_0", "self-reflection is already in the base model before any RL, and mostly superficial",
        "Liu et al. 2025, 'There May Not Be Aha Moment in R1-Zero-like Training' (oat)",
        f"the base's share of task answers (T=1, {AUDIT_K} per test prompt) with a written check, and what its checks "
        "did: caught a slip, broke right work, missed a slip, confirmed right work",
        "confirmed if the base checks at least 1% of its answers on every seed and its checks catch no more slips "
        "than they break or miss; refuted if it checks under 1% on every seed", judge_reflection, audit=True,
        uses=()),
    Arm("reach", "RL with verifiable rewards sharpens sampling (pass@1) but adds no reach (pass@k at large k)",
        "Yue et al. 2025, 'Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs Beyond the "
        "Base Model?'", f"pass@k of the base and of R1-Zero on the test split, k = 1 ... {AUDIT_K}",
        f"confirmed if R1-Zero's pass@{AUDIT_K} is at most the base's + 0.02 on every seed; refuted if it is at least "
        "+0.05 on every seed", judge_reach, audit=True),
    Arm("dr_grpo", "GRPO's per-response length normalisation and std scaling make wrong answers longer; Dr. GRPO's "
        "unnormalised loss removes the bias", "Liu et al. 2025, 'Understanding R1-Zero-Like Training: A Critical "
        "Perspective' (Dr. GRPO)", "length of wrong minus right rollouts at equal chain length, last quarter of the "
        "steps: grpo + scale_rewards group vs dr_grpo + none (the recipe's dapo as reference); test pass@1",
        "confirmed if under grpo wrong rollouts are longer and the gap is larger than under dr_grpo on every seed; "
        "refuted if it is not larger on any seed", judge_dr_grpo,
        (Variant("grpo", ("r1_zero.loss_type=grpo", "r1_zero.scale_rewards=group")),
         Variant("dr_grpo", ("r1_zero.loss_type=dr_grpo", "r1_zero.scale_rewards=none")))),
    Arm("format_off", "written reasoning emerges from the accuracy reward alone; a rigid format reward is not needed "
        "and can hurt", "Zeng et al. 2025, 'SimpleRL-Zoo'", "the first step at which half of the rollouts write "
        "their work out, with and without the format reward; test pass@1",
        "confirmed if without the format reward the switch still happens on every seed and pass@1 stays within "
        "0.02 of the reference; refuted if it never happens on any seed", judge_format,
        (Variant("no_format", ("r1_zero.rewards=[{name: accuracy}]",)),)),
    Arm("clip_higher", "clip-higher (epsilon_high > epsilon) keeps the policy's entropy from collapsing; it binds "
        "only with more than one gradient step per generation", "Yu et al. 2025, 'DAPO'",
        "the policy's entropy over the last quarter of steps, the high clip ratio, pass@16 and longer-split pass@1, "
        "at epsilon_high 0.2 and 0.28, both with num_iterations 2",
        "confirmed if the entropy stays higher at 0.28 on every seed while the high clip binds; refuted if it is "
        "not higher on any seed while it binds (amended after seeds 1-2: where the clip never binds the two "
        "variants are one run, and float noise decided)", judge_clip_higher,
        (Variant("clip_0.20", ("r1_zero.trl={num_iterations: 2}", "r1_zero.epsilon_high=0.2")),
         Variant("clip_0.28", ("r1_zero.trl={num_iterations: 2}", "r1_zero.epsilon_high=0.28")))),
    Arm("kl", "no KL penalty is needed in R1-Zero-style training (R1 itself used beta 0.001)",
        "Yu et al. 2025, 'DAPO'; DeepSeek-AI 2025, 'DeepSeek-R1'", "test pass@1 and rollout length at beta 0 (the "
        "reference), 0.001 and 0.04", "confirmed if beta 0 is within 0.02 of the best KL variant on every seed; "
        "refuted if it trails it by more than 0.05 on every seed", judge_kl,
        (Variant("beta_0.001", ("r1_zero.beta=0.001",)), Variant("beta_0.04", ("r1_zero.beta=0.04",)))),
    Arm("no_checks", "the 'aha' self-verification is discovered by RL from answer-only rewards, not copied from "
        "pretraining", "DeepSeek-AI 2025, 'DeepSeek-R1' (the aha moment), against Liu et al. 2025 (oat)",
        "in a world whose corpus never checks (check_rate 0, practice without checked solutions; its own base), the "
        "share of R1-Zero's rollouts (last quarter) with a reflection word or a written check; test pass@1 against "
        "the reference world's", "confirmed if a tenth of the rollouts reflect in the world without checks on every "
        "seed; refuted if under 1% do on every seed while the reference world's do", judge_no_checks,
        (Variant("no_checks", NO_CHECKS),)),
)
BY_NAME = {a.name: a for a in ARMS}


def variants(arms: list[Arm]) -> list[Variant]:
    """The training variants these arms need, each once, the reference first."""
    out: dict[str, Variant] = {}
    for arm in arms:
        if "reference" in arm.uses or arm.variants:
            out.setdefault(REFERENCE.name, REFERENCE)
        for v in arm.variants:
            out.setdefault(v.name, v)
    return list(out.values())

