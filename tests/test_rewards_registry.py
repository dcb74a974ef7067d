"""The reward registry and the safety wrapper."""

from __future__ import annotations

import logging
import pickle

import pytest

from core.config import RewardSpec
from rewards import registry
from rewards.catalog import RewardParamsError, UnknownRewardError, build, get, names, validate
from rewards.registry import reward
from rewards.safety import SafeReward, failure_counts

REQUIRED = {"accuracy", "format", "language_consistency", "overlong", "cosine_length", "token_efficiency", "code",
            "reward_model"}


def test_builtin_names():
    assert set(names()) >= REQUIRED


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownRewardError, match="unknown reward 'acurracy'; known rewards: accuracy, ") as err:
        get("acurracy")
    assert isinstance(err.value, ValueError)
    assert all(name in str(err.value) for name in REQUIRED)


def test_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        reward("accuracy")(lambda completions, **kw: [0.0] * len(completions))


def test_validate_checks_params_without_building():
    validate([RewardSpec(name="overlong", params={"max_completion_len": 64, "soft_punish_cache": 16})])
    with pytest.raises(RewardParamsError, match="'overlong': unknown parameter\\(s\\) \\['max_len'\\]"):
        validate([RewardSpec(name="overlong", params={"max_len": 64})])
    with pytest.raises(UnknownRewardError):
        validate([RewardSpec(name="nope")])
    # Reward-model scoring needs a trained model, but validating it loads nothing.
    validate([RewardSpec(name="reward_model")])


def test_build_names_binds_params_and_weights():
    funcs, weights = build([
        RewardSpec(name="accuracy", weight=2.0),
        RewardSpec(name="overlong", weight=0.5, params={"max_completion_len": 10, "soft_punish_cache": 5}),
        RewardSpec(name="reward_model"),
    ], reward_model_path="/nowhere")
    assert [f.__name__ for f in funcs] == ["accuracy", "overlong", "reward_model"]
    assert weights == [2.0, 0.5, 1.0]
    assert funcs[1](["x"], completion_ids=[[1] * 8], prompts=["q"]) == [pytest.approx(-0.6)]
    assert funcs[2].func.keywords == {"reward_model_path": "/nowhere"}
    assert all(isinstance(f, SafeReward) for f in funcs)


def test_built_rewards_pickle():
    # TRL's async rollout worker sends reward functions to another process.
    funcs, _ = build([RewardSpec(name="format")])
    clone = pickle.loads(pickle.dumps(funcs[0]))
    assert clone.__name__ == "format"
    assert clone(["<think>r</think> 5"]) == [1.0]


def _fragile(completions, answer=None, **kwargs):
    return [1.0 / float(len(c) - 3) for c in completions]  # 'bad' (3 chars) divides by zero


@pytest.fixture
def fragile():
    registry._REGISTRY.pop("test_fragile", None)
    registry._REGISTRY.pop("test_fragile0", None)
    reward("test_fragile")(_fragile)
    reward("test_fragile0", on_error=0.0)(_fragile)
    yield
    registry._REGISTRY.pop("test_fragile", None)
    registry._REGISTRY.pop("test_fragile0", None)


@pytest.mark.parametrize(("name", "on_error"), [("test_fragile", None), ("test_fragile0", 0.0)])
def test_an_exception_scores_only_the_offender(fragile, caplog, name, on_error):
    (func,), _ = build([RewardSpec(name=name)])
    metrics: list[tuple[str, float]] = []
    before = failure_counts().get(name, 0)
    offender = "bad"
    with caplog.at_level(logging.WARNING, logger="rewards.safety"):
        out = func(["abcd", offender, "abcde"], answer=["a", "b", "c"], log_metric=lambda k, v: metrics.append((k, v)))
    assert out == [1.0, on_error, 0.5]
    assert failure_counts()[name] == before + 1
    assert metrics == [(f"rewards/{name}/failures", 1.0)]
    assert "ZeroDivisionError" in caplog.text and "completion: bad" in caplog.text


def test_logged_offender_is_truncated(caplog):
    def boom(completions, **kw):
        raise RuntimeError("boom")

    wrapped = SafeReward("boom", boom)
    with caplog.at_level(logging.WARNING, logger="rewards.safety"):
        assert wrapped(["y" * 5000]) == [None]
    assert "RuntimeError: boom" in caplog.text
    assert "... [5000 chars]" in caplog.text
    assert "y" * 201 not in caplog.text


def test_clean_batches_log_zero_failures():
    metrics = []
    SafeReward("ok", lambda completions, **kw: [0.0] * len(completions))(["a", "b"], log_metric=lambda k, v: metrics.append((k, v)))
    assert metrics == [("rewards/ok/failures", 0.0)]


def test_bad_return_values_are_failures():
    assert SafeReward("short", lambda completions, **kw: [1.0])(["a", "b"]) == [1.0, 1.0]  # retried alone: fine
    assert SafeReward("inf", lambda completions, **kw: [float("inf")] * len(completions))(["a"]) == [None]
    assert SafeReward("nan", lambda completions, **kw: [float("nan")] * len(completions))(["a"]) == [None]


def test_real_rewards_survive_garbage_inputs():
    """Garbage scores None ("cannot judge") or a value no better than a wrong answer, and does not
    spoil the scores of the well-formed, correct completion in the same batch (the last row)."""
    import math

    funcs, _ = build([RewardSpec(name=n) for n in ("accuracy", "format", "language_consistency", "cosine_length",
                                                    "token_efficiency")])
    garbage = [None, 42, [{"role": "assistant"}], "<think>" * 1000, "\x00\udcff", {"content": None}]
    good = "<think>i start from 2 + 3 . then 5</think> <answer>5</answer>"
    n = len(garbage) + 1
    scores = {}
    for func in funcs:
        out = func([*garbage, good], prompts=["q"] * n, answer=["5", None, "", "\\frac{", "1/0", "x", "5"],
                   task=["chain_sum"] * n, metadata=["not json"] * (n - 1) + ["{}"], completion_ids=[[1]] * n)
        assert len(out) == n
        assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in out), (func.__name__, out)
        scores[func.__name__] = out
    assert all(v in (None, 0.0) for v in scores["accuracy"][:-1]), scores["accuracy"]  # never judged correct
    assert scores["format"][:-1] == [0.0] * len(garbage)  # none of it is well-formed
    assert all(v is None or 0.0 <= v <= 1.0 for v in scores["language_consistency"])
    assert scores["accuracy"][-1] == 1.0 and scores["format"][-1] == 1.0
    assert scores["language_consistency"][-1] == 1.0
