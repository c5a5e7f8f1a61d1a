"""What machine a timing comes from: CPU model, its bf16 support, cores.

Timings (seconds per pair) depend on the machine and the number format; every run records
these facts beside its timings so numbers from different machines are never compared blind.
Correctness never depends on them.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16); bf16 is slow elsewhere."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_info() -> dict:
    """CPU model name, bf16 flags and core count, as recorded beside timings."""
    text = _cpuinfo()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("model name")), platform.processor() or "unknown")
    flags = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f" {f}" in text]
    return {"cpu": name, "cpu_flags": flags, "cores": os.cpu_count()}
