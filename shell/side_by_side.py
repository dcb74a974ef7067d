"""Run several long benchmark processes side by side, a few at a time, each logging to its own file,
and echo their progress lines to the terminal.

Why side by side: the pocket world's GRPO steps are mostly generation, which barely uses a second
CPU thread (docs/design.md), so on 2 cores two one-core processes finish sooner than two two-core
processes in a row. The cores are shared out, never oversubscribed: at most as many jobs run as
there are cores, each pinned to cores of its own (sched_setaffinity) with as many torch threads
(core/machine.py, use_own_cores); threads waiting on a core another process holds stall each other
(a pocket pretraining step 4-7x slower beside one other job, not 2x).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from re import Pattern
from typing import IO

from core.processes import stop


@dataclass
class Job:
    """One process: a name for the terminal, its command line, extra environment, its log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    out: IO[bytes]
    started: float
    cores: list[int]
    read: int = 0


def own_cores() -> list[int]:
    """The CPUs this process may run on (a container's share, not the host's count)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def core_groups(cores: list[int], parallel: int) -> list[list[int]]:
    """`cores` split into `parallel` disjoint groups, as even as they come (parallel <= len(cores))."""
    return [cores[i::parallel] for i in range(parallel)]


def run(jobs: list[Job], parallel: int, progress: Pattern[str] | None = None, poll_s: float = 2.0) -> dict[str, int]:
    """Run the jobs, at most `parallel` at a time (and never more than there are cores), in order,
    each on cores of its own; returns name -> exit code.

    Where `progress` finds a match in a job's log line, the match (its first matched group, if it
    has groups) is printed as it appears, after the job's name; so is every start and end, with the
    log's path. Ctrl-C stops every job."""
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    cores = own_cores()
    parallel = min(parallel, len(cores), len(jobs) or 1)
    free = core_groups(cores, parallel)
    todo, running, codes = list(jobs), [], {}
    try:
        while todo or running:
            while todo and free:
                job, mine = todo.pop(0), free.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                out = job.log.open("wb")
                env = {**os.environ, **job.env}
                for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                    env[var] = str(len(mine))
                pin = (lambda cpus=frozenset(mine): os.sched_setaffinity(0, cpus)) \
                    if hasattr(os, "sched_setaffinity") else None
                proc = subprocess.Popen(job.argv, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=pin)
                running.append(_Running(job, proc, out, time.monotonic(), mine))
                print(f"[{job.name}] started on core(s) {mine}, log: {job.log}", flush=True)
            time.sleep(poll_s)
            for r in list(running):
                done = r.proc.poll() is not None  # asked first, so the echo below has all it wrote
                _echo(r, progress)
                if not done:
                    continue
                r.out.close()
                running.remove(r)
                free.append(r.cores)
                codes[r.job.name] = r.proc.returncode
                minutes = (time.monotonic() - r.started) / 60
                verdict = "finished" if r.proc.returncode == 0 else f"FAILED (exit {r.proc.returncode})"
                print(f"[{r.job.name}] {verdict} after {minutes:.1f} min, log: {r.job.log}", flush=True)
    finally:
        if running:  # Ctrl-C or an error here: leave no job running
            import psutil

            stop([psutil.Process(r.proc.pid) for r in running], grace_s=10)
            for r in running:
                r.proc.wait()
                r.out.close()
    return codes


def _echo(r: _Running, progress: Pattern[str] | None) -> None:
    """Print what `progress` finds in the job's new complete log lines."""
    if progress is None:
        return
    with r.job.log.open("rb") as f:
        f.seek(r.read)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    r.read += len(complete)
    for line in complete.decode(errors="replace").splitlines():
        if m := progress.search(line):
            found = next((g for g in m.groups() if g is not None), m.group(0))
            print(f"[{r.job.name}] {found}", flush=True)
