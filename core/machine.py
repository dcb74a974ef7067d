"""What this machine is, as training sees it: its CPU (model, instruction set, native bfloat16 or
not), the cores this process may use, and the compute dtype a CPU pretraining loop should use.

Threads: torch's intra-op threads that wait on a core another process holds stall each other (a
pocket pretraining step 4-7x slower beside one other job, not 2x), so a process uses as many threads
as it has cores to itself (`os.sched_getaffinity`), and processes run side by side are given
disjoint cores (shell/side_by_side.py).

The dtype: bfloat16 autocast is emulated where the CPU has no bfloat16 instructions (AVX2 only: a
pocket pretraining step 14x slower than float32), and pays only where the CPU has them
(AVX512-BF16, AMX) *and* the matrices are large enough (the pocket teacher's did, its student's did
not). `autocast_dtype("auto", ...)` therefore picks bfloat16 only on a CPU with native bfloat16
where a short probe of the model's own shapes runs clearly faster in it, else float32. The probe's
verdict is kept per machine and shape (`cache`), so a machine always picks the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 arithmetic
FASTER = 0.85  # bfloat16 is chosen only when the probe takes at most this share of float32's time


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def native_bf16() -> list[str]:
    """The CPU's native bfloat16 instruction sets ([] when bfloat16 would be emulated)."""
    return [flag for flag in BF16_FLAGS if flag in cpu_flags()]


@dataclass(frozen=True)
class Machine:
    """The machine a stage ran on, as manifests and reports record it."""

    cpu: str
    capability: str  # torch's CPU instruction set (AVX2, AVX512, ...)
    native_bf16: tuple[str, ...]
    cores: int  # this process's CPU affinity
    threads: int  # torch's intra-op threads
    gpus: int


def machine() -> dict[str, Any]:
    """This machine (Machine) as plain data."""
    import torch

    return asdict(Machine(cpu_model(), torch.backends.cpu.get_cpu_capability(), tuple(native_bf16()), cores(),
                          torch.get_num_threads(), torch.cuda.device_count() if torch.cuda.is_available() else 0))


def use_own_cores() -> int:
    """Set torch's intra-op threads to the cores this process may use; the count."""
    import torch

    n = cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@dataclass(frozen=True)
class DtypeChoice:
    """The compute dtype a CPU training loop uses, and why."""

    dtype: str  # "float32" or "bfloat16"
    reason: str
    probe_s: dict[str, float] | None = None  # seconds a probe step took per dtype (when probed)


def autocast_dtype(requested: str, probe: Callable[[str], float], shape: dict[str, Any],
                   cache: Path | None = None) -> DtypeChoice:
    """`requested` ("float32", "bfloat16" or "auto") resolved on this machine. `probe(dtype)` times one
    training step of the model's shapes in that dtype; `shape` names those shapes (the verdict's key
    in `cache`, a directory, together with the CPU and torch)."""
    if requested != "auto":
        return DtypeChoice(requested, "set by the recipe")
    native = native_bf16()
    if not native:
        import torch

        return DtypeChoice("float32", f"no native bfloat16 on this CPU ({torch.backends.cpu.get_cpu_capability()}: "
                                      "autocast would emulate it)")
    import torch

    key = hashlib.sha256(json.dumps({"cpu": cpu_model(), "flags": native, "torch": torch.__version__,
                                     "threads": torch.get_num_threads(), "shape": shape},
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"autocast-{key}.json" if cache is not None else None
    if path is not None and path.is_file():
        return DtypeChoice(**json.loads(path.read_text()))
    probe("float32")  # warm-up: first calls allocate and pick kernels
    times = {dtype: min(_timed(probe, dtype) for _ in range(3)) for dtype in ("float32", "bfloat16")}
    faster = times["bfloat16"] <= FASTER * times["float32"]
    choice = DtypeChoice("bfloat16" if faster else "float32",
                         f"native bfloat16 ({', '.join(native)}); a probe step took {times['bfloat16']:.3f} s in "
                         f"bfloat16 against {times['float32']:.3f} s in float32", times)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(choice), indent=1))
        tmp.replace(path)
    return choice


def _timed(probe: Callable[[str], float], dtype: str) -> float:
    t0 = time.perf_counter()
    probe(dtype)
    return time.perf_counter() - t0
