"""GRPO in vLLM server mode, on the CPU: one pocket reasoning-RL step whose rollouts come from a server
of the test's own on 127.0.0.1 (tests/fake_vllm_server.py) speaking the endpoints TRL 1.16 calls, with
the pocket base. Only vLLM's CUDA/NCCL weight transfer is stood in for, at TRL's boundary; the recipe's
`vllm_server` settings, our stage, TRL's client and its weight sync run for real. Also: the server check
behind preflight, `r1 doctor` and `r1 dry-run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from core import distributed, generation, vllm_server
from core.config import GRPOStageConfig, VllmServerConfig, load_recipe
from core.trainers import grpo_args
from tests.fake_vllm_server import FakeVllmServer, stub_nccl_weight_transfer

TEST_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "pocket-test.yaml"


def test_the_stage_settings_reach_trls_config(tmp_path, monkeypatch):
    cfg = GRPOStageConfig(batch_size=8, num_generations=4, use_vllm=True, vllm_mode="server",
                          vllm_server=VllmServerConfig(host="10.1.2.3", port=8123, timeout=30, group_port=51300))
    monkeypatch.delenv(vllm_server.URL_ENV, raising=False)
    args = grpo_args(cfg, tmp_path, 0, [1.0], report_to="none", stop_ids=[7])
    assert (args.vllm_mode, args.vllm_server_host, args.vllm_server_port) == ("server", "10.1.2.3", 8123)
    assert (args.vllm_server_timeout, args.vllm_group_port, args.vllm_server_base_url) == (30, 51300, None)
    assert args.generation_kwargs == {"stop_token_ids": [7]}
    monkeypatch.setenv(vllm_server.URL_ENV, "http://node-7:8000")  # set by a gang job that starts the server
    assert grpo_args(cfg, tmp_path, 0, [1.0], report_to="none").vllm_server_base_url == "http://node-7:8000"
    url = VllmServerConfig(base_url="http://gen-node:8000/")
    assert url.url == "http://gen-node:8000"
    with pytest.raises(ValueError, match="http"):
        VllmServerConfig(base_url="gen-node:8000")


def test_one_grpo_step_generates_on_the_server(pocket_run, monkeypatch, tmp_path):
    from stages import grpo, runner

    store, _, task_data_ref, base_ref = pocket_run
    monkeypatch.delenv(distributed.PYTHON_ENV, raising=False)
    seen = stub_nccl_weight_transfer(monkeypatch)
    # vLLM counts as usable here: TRL's boundary above stands in for it (the rest of the check is ours)
    monkeypatch.setattr(generation, "vllm_unavailable", lambda: None)
    rewarded: list[list[str]] = []

    def recording(funcs_and_weights):
        funcs, weights = funcs_and_weights

        def first(completions, **kwargs):
            rewarded.append([c[0]["content"] if isinstance(c, list) else c for c in completions])
            return funcs[0](completions, **kwargs)

        first.__name__ = funcs[0].__name__
        return [first, *funcs[1:]], weights

    real = grpo.grpo_rewards
    monkeypatch.setattr(grpo, "grpo_rewards", lambda *a, **k: recording(real(*a, **k)))
    group_port = distributed._free_port()
    with FakeVllmServer(base_ref.path) as server:
        recipe = load_recipe(TEST_RECIPE, [
            "reasoning_rl.steps=1", "reasoning_rl.use_vllm=true", "reasoning_rl.vllm_mode=server",
            f"reasoning_rl.vllm_server.base_url={server.url}", "reasoning_rl.vllm_server.timeout=10",
            f"reasoning_rl.vllm_server.group_port={group_port}"])
        run_id = store.new_run_id("server-mode")
        runner.build(["reasoning_rl"], recipe, store, run_id, {"task_data": task_data_ref, "base": base_ref})
        ok, found = vllm_server.check(recipe.reasoning_rl.vllm_server, base_ref.path)
    manifest = store.manifest(run_id, "reasoning_rl")
    assert manifest["metrics"]["rollouts"] == "vllm" and manifest["metrics"]["steps"] == 1
    cfg = recipe.reasoning_rl

    # TRL's client: health, the served model, the dev-mode config, the world size
    assert server.calls("/health") and server.calls("/v1/models") and server.calls("/get_world_size")
    assert server.calls("/server_info")
    # the weight-update group on the recipe's group port, then the merged weights, before generating
    (init,) = server.calls("/init_weight_transfer_engine")
    assert init["init_info"]["master_port"] == group_port and init["init_info"]["world_size"] == 2
    assert seen["init_info"] == init["init_info"]
    (update,) = server.calls("/update_weights")
    assert update["update_info"]["names"] == [name for name, _ in seen["sent"]] == server.received
    assert "model.layers.0.self_attn.q_proj.weight" in server.received  # the base's names: LoRA merged in
    assert not any("lora" in name for name in server.received)
    assert server.calls("/start_weight_update") and server.calls("/finish_weight_update")
    assert server.requests.index(("POST", "/finish_weight_update", {})) < \
        [p for _, p, _ in server.requests].index("/v1/completions")

    # the generation request: the group per prompt, the stage's length, temperature and stop ids
    (payload,) = server.calls("/v1/completions")
    prompts = cfg.batch_size // cfg.num_generations
    assert len(payload["prompt"]) == prompts and all(isinstance(t, int) for t in payload["prompt"][0])
    assert payload["n"] == cfg.num_generations and payload["max_tokens"] == cfg.max_completion_length
    assert payload["temperature"] == cfg.temperature and payload["top_p"] == cfg.top_p
    tokenizer = AutoTokenizer.from_pretrained(base_ref.path)
    assert payload["stop_token_ids"] == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert payload["return_token_ids"] is True and payload["logprobs"] == 0

    # every completion the server generated came back into the rewards, in order
    assert len(rewarded) == 1 and len(rewarded[0]) == cfg.batch_size
    served = [tokenizer.decode(c["token_ids"], skip_special_tokens=True) for c in server.generated]
    assert rewarded[0] == served
    # and the doctor's check finds the server serving the stage's base
    assert ok, found


def test_the_server_check_says_what_is_wrong(tmp_path):
    closed = VllmServerConfig(port=distributed._free_port())
    ok, why = vllm_server.check(closed, "Qwen/Qwen2.5-1.5B", timeout=2)
    assert not ok and "does not answer" in why


def test_the_server_check_refuses_another_model(pocket_run):
    _, _, _, base_ref = pocket_run
    with FakeVllmServer(base_ref.path, served_name="Qwen/Qwen2.5-0.5B") as server:
        cfg = VllmServerConfig(base_url=server.url)
        ok, why = vllm_server.check(cfg, "Qwen/Qwen2.5-1.5B")
        assert not ok and "not the stage's base 'Qwen/Qwen2.5-1.5B'" in why and "vllm serve" in why
        assert vllm_server.check(cfg, "Qwen/Qwen2.5-0.5B")[0]
        assert vllm_server.check(cfg, base_ref.path)[0]  # the served root (a local path) counts too


def test_preflight_dry_run_and_doctor_check_the_server(pocket_run, monkeypatch):
    from shell import doctor
    from shell.plan import dry_run
    from stages import preflight

    _, _, _, base_ref = pocket_run
    monkeypatch.setattr(preflight, "workers_without_vllm", lambda recipe: None)  # workers with vLLM and a GPU
    down = [f"reasoning_rl.vllm_server.port={distributed._free_port()}", "reasoning_rl.use_vllm=true",
            "reasoning_rl.vllm_mode=server"]
    with pytest.raises(preflight.PreflightError, match=r"reasoning_rl\.vllm_server: .* does not answer"):
        preflight.check_recipe(load_recipe(TEST_RECIPE, down))
    with FakeVllmServer(base_ref.path, served_name="pocket-base") as server:
        up = [f"reasoning_rl.vllm_server.base_url={server.url}", "reasoning_rl.use_vllm=true",
              "reasoning_rl.vllm_mode=server"]
        recipe = load_recipe(TEST_RECIPE, up)
        preflight.check_recipe(recipe)  # the pocket base is built in the run: any served model is taken
        plan = dry_run(str(TEST_RECIPE), up)
        assert f"vLLM server at {server.url}" in plan
        assert f"reasoning_rl.vllm_server: {server.url} answers, serves pocket-base" in plan
        finding = doctor.check_vllm_servers(recipe)
        assert finding.status == doctor.OK and "serves pocket-base" in finding.detail
    assert doctor.check_vllm_servers(recipe).status == doctor.FAIL  # the server is gone
    started_by_the_job = load_recipe(TEST_RECIPE, [*down, "reasoning_rl.vllm_server.preflight=false"])
    assert "not checked before the run" in preflight.check_recipe(started_by_the_job)[-1]
