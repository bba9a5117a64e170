"""What a benchmark ran on, saved with its figures: step times differ by CPU from one session to the next."""

from __future__ import annotations

from pathlib import Path


def cpu_description() -> str:
    """The CPU's model name and whether it computes bfloat16 natively (AMX or AVX-512 BF16, from /proc/cpuinfo)."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    native = bool(flags & {"amx_tile", "avx512_bf16"})
    return f"{name}, {'native' if native else 'emulated'} bfloat16"
