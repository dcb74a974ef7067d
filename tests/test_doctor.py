"""`r1 doctor`: every check reports ok / warn / fail, every problem comes with what to do."""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shell import cli, doctor

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def health_server():
    """A local HTTP server answering /api/health like a Prefect server."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("R1_DISK_MARGIN", raising=False)
    monkeypatch.setenv("R1_RUNS_DIR", str(tmp_path / "runs"))


def test_healthy_machine_report():
    findings = doctor.run_checks()
    assert [f.check for f in findings] == ["versions", "device", "disk", "prefect", "wandb", "sandbox"]
    by = {f.check: f for f in findings}
    assert by["versions"].status == "ok" and "torch 2.13.0" in by["versions"].detail
    assert "python 3.11" in by["versions"].detail and "vllm" in by["versions"].detail
    assert by["device"].status in ("ok", "warn") and ("CPU only" in by["device"].detail or "CUDA" in by["device"].detail)
    assert by["disk"].status in ("ok", "warn") and "free at" in by["disk"].detail
    assert by["prefect"].status == "ok" and "temporary local server" in by["prefect"].detail
    assert by["wandb"].status == "ok" and "wandb sync" in by["wandb"].detail
    report = doctor.format_report(findings)
    assert report.endswith("ready to run") and doctor.exit_status(findings) == 0


def test_versions_that_do_not_match_the_pins():
    f = doctor.check_versions({"torch": "==0.0.1", "surely-not-installed-r1": "==1.0"})
    assert f.status == "fail"
    assert "torch 2.13.0" in f.detail and "(expected ==0.0.1)" in f.detail
    assert "surely-not-installed-r1 missing (expected ==1.0)" in f.detail and "make install" in f.fix


def test_prefect_server_that_does_not_answer(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{closed_port()}/api")
    f = doctor.check_prefect(timeout=1)
    assert f.status == "fail" and "does not answer" in f.detail and "(from PREFECT_API_URL)" in f.detail
    assert "make serve" in f.fix and "unset PREFECT_API_URL" in f.fix


def test_prefect_server_that_answers_from_the_profile(health_server, tmp_path):
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir()
    (home / "profiles.toml").write_text(f'active = "local"\n\n[profiles.local]\nPREFECT_API_URL = "{health_server}"\n')
    f = doctor.check_prefect(timeout=2)
    assert f.status == "ok" and f"server answers at {health_server}" in f.detail and "profile 'local'" in f.detail


@pytest.mark.parametrize("mode, status, text", [
    ("offline", "ok", "wandb sync"), ("disabled", "warn", "not tracked"), ("loud", "fail", "not a W&B mode")])
def test_wandb_modes(monkeypatch, mode, status, text):
    monkeypatch.setenv("WANDB_MODE", mode)
    f = doctor.check_wandb()
    assert f.status == status and text in f.detail
    assert (f.fix != "") == (status != "ok")


def test_wandb_online_without_network(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    f = doctor.check_wandb(timeout=1)
    assert f.status == "fail" and "is not reachable" in f.detail and "WANDB_MODE=offline" in f.fix


def test_disk_below_the_margin(monkeypatch):
    monkeypatch.setenv("R1_DISK_MARGIN", "1000T")
    f = doctor.check_disk()
    assert f.status == "fail" and "no stage can start" in f.detail and "R1_RUNS_DIR" in f.fix
    monkeypatch.setenv("R1_DISK_MARGIN", "plenty")
    f = doctor.check_disk()
    assert f.status == "fail" and "R1_DISK_MARGIN" in f.detail and "2G" in f.fix


def test_a_check_that_crashes_is_reported_not_raised():
    def check_gpu():
        raise RuntimeError("driver gone")

    (f,) = doctor.run_checks((check_gpu,))
    assert f.check == "gpu" and f.status == "fail" and "RuntimeError: driver gone" in f.detail


def test_cli_and_make_target(capsys, monkeypatch):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("r1 doctor") and "ready to run" in out
    monkeypatch.setenv("WANDB_MODE", "loud")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "wandb (fail): set WANDB_MODE to one of online, offline, disabled, dryrun" in out
    assert "1 problem(s) to fix" in out
    dry = subprocess.run(["make", "-n", "doctor"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert f"{Path('.venv/bin/python')} -m shell.cli doctor" in dry.stdout


def test_doctor_subprocess_exit_status(tmp_path):
    env = dict(os.environ, WANDB_MODE="loud", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "shell.cli", "doctor"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and re.search(r"^\s+wandb\s+fail\s", proc.stdout, re.M), proc.stdout


def test_sandbox_check_reports_the_kernel_sandbox_or_what_to_install(monkeypatch):
    import shutil

    from rewards import sandbox

    assert doctor.check_sandbox().status == "ok"  # CI installs bubblewrap (.ci/run -> make install)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else "/usr/bin/" + name)
    sandbox.kernel_sandbox.cache_clear()
    try:
        f = doctor.check_sandbox()
    finally:
        sandbox.kernel_sandbox.cache_clear()
    assert f.status == "warn" and "bubblewrap" in f.detail and "sandbox: process" in f.fix
