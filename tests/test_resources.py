"""Disk: a stage refuses to start, naming path, free and needed bytes and what to do, when what it
will write does not fit; the estimates bound what a real stage writes; checkpoints are bounded."""

from __future__ import annotations

import pytest

from core import resources
from core.resources import parse_bytes
from core.runstore import DiskSpaceError, RunStore, StageError, StageResult, ensure_free_disk


@pytest.mark.parametrize("text, expected", [("0", 0), ("1024", 1024), ("512M", 512 << 20), ("2G", 2 << 30),
                                            ("1.5g", 3 << 29), ("3 GiB", 3 << 30), ("1T", 1 << 40)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_refusal_names_path_free_needed_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("R1_DISK_MARGIN", "1G")
    free = resources.free_bytes(tmp_path)
    with pytest.raises(DiskSpaceError) as err:
        ensure_free_disk(tmp_path / "runs", free, "run-1/merged")  # the margin no longer fits
    msg = str(err.value)
    assert msg.startswith(f"run-1/merged: not enough free disk at {tmp_path / 'runs'}: ")
    assert f"the stage writes about {resources.human(free)} ({free} bytes)" in msg
    assert "R1_DISK_MARGIN keeps 1.0 GiB free" in msg
    assert "point R1_RUNS_DIR at a larger disk" in msg and "lower save_total_limit" in msg
    assert isinstance(err.value, StageError)  # the CLI prints it as an error, no traceback


def test_margin_override(tmp_path, monkeypatch):
    free = resources.free_bytes(tmp_path)
    monkeypatch.setenv("R1_DISK_MARGIN", "0")
    ensure_free_disk(tmp_path, free // 2, "r/s")  # fits without a margin
    monkeypatch.setenv("R1_DISK_MARGIN", str(free))
    with pytest.raises(DiskSpaceError):
        ensure_free_disk(tmp_path, 1, "r/s")
    monkeypatch.setenv("R1_DISK_MARGIN", "lots")
    with pytest.raises(DiskSpaceError, match=r"R1_DISK_MARGIN='lots': expected a size in bytes"):
        ensure_free_disk(tmp_path, 1, "r/s")


def test_run_stage_refuses_before_building_but_reuses_without_space(tmp_path, monkeypatch):
    store, calls = RunStore(tmp_path), []

    def build(work):
        calls.append(work)
        (work / "out.txt").write_text("x")
        return StageResult()

    too_much = resources.free_bytes(tmp_path) * 2
    with pytest.raises(DiskSpaceError, match="r1/s: not enough free disk"):
        store.run_stage("r1", "s", {}, {}, build, needs_bytes=too_much)
    assert calls == [] and not (tmp_path / "r1" / "s").exists() and not (tmp_path / "r1" / ".s.work").exists()
    ref = store.run_stage("r1", "s", {}, {}, build, needs_bytes=1 << 20).ref
    # a finished stage is reused whatever the disk holds: reuse writes nothing
    assert store.run_stage("r1", "s", {}, {}, build, needs_bytes=too_much).ref == ref and len(calls) == 1


def test_a_pipeline_stage_refuses_when_the_disk_is_full(pocket_run, test_recipe, tmp_path, monkeypatch):
    from stages import runner

    store, _, task_data_ref, base_ref = pocket_run
    monkeypatch.setenv("R1_DISK_MARGIN", str(resources.free_bytes(store.root)))
    with pytest.raises(DiskSpaceError, match=r"disk-full/cold_start_data: not enough free disk .* the stage writes"):
        runner.build(["cold_start"], test_recipe, store, "disk-full", {"task_data": task_data_ref, "base": base_ref})
    assert not (store.root / "disk-full" / "cold_start_data").exists()


@pytest.mark.slow
def test_estimate_bounds_a_real_stage_and_checkpoints_are_bounded(pocket_run, test_recipe, tmp_path):
    """SFT with a checkpoint every step and save_total_limit 2 keeps 2; the estimate covers it all."""
    import pocket
    from core.trainers import train_sft
    from data.saved import load_split

    _, _, task_data_ref, base_ref = pocket_run
    cfg = test_recipe.cold_start.model_copy(update={"steps": 5, "save_steps": 1, "save_total_limit": 2})
    data = pocket.cold_start_rows(load_split(task_data_ref, "train"), 32, 0, test_recipe.data.template)
    work = tmp_path / "work"
    work.mkdir()
    data.save_to_disk(str(work / "dataset"))
    train_sft(base=base_ref.path, adapter=None, lora=test_recipe.model.lora, dtype="float32", dataset=data,
              cfg=cfg, work=work, seed=0, report_to="none")
    kept = sorted(p.name for p in (work / "checkpoints").glob("checkpoint-*"))
    assert kept == ["checkpoint-4", "checkpoint-5"]  # five saved, the last two kept
    written = resources.tree_bytes(work)
    estimate = resources.trainer_stage_bytes(base_ref.path, test_recipe.model.lora.r, cfg.save_total_limit)
    assert written < estimate, (written, estimate)
    adapter = resources.tree_bytes(work / "adapter" / "adapter_model.safetensors")
    assert adapter <= resources.lora_adapter_bytes(base_ref.path, test_recipe.model.lora.r) < 2 * adapter
    assert resources.model_copy_bytes(base_ref.path) >= resources.tree_bytes(base_ref.path)
