"""Facts about the host CPU, read from the operating system without any ML framework.

CPU discovery must always succeed: every probe here degrades to ``None``/empty and records
why in the returned problems instead of raising.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import socket
import subprocess
import sys
from dataclasses import dataclass

from chipfit.results import Problem

__all__ = ["ML_ISA_FEATURES", "CpuFacts", "cache_bytes", "probe_cpu"]

# ISA extensions that change what ML kernels a CPU can run fast, in display order.
# Linux /proc/cpuinfo names; macOS and aarch64 names are mapped onto these below.
ML_ISA_FEATURES = (
    "sse4_2", "fma", "f16c", "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "neon", "asimddp", "bf16", "i8mm", "sve", "sve2", "sme",
)
_AARCH64_ALIASES = {"asimd": "neon", "asimdhp": "neon"}
_MAC_SYSCTL = {
    "hw.optional.arm.FEAT_DotProd": "asimddp", "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_I8MM": "i8mm", "hw.optional.arm.FEAT_SME": "sme",
    "hw.optional.neon": "neon", "hw.optional.avx2_0": "avx2", "hw.optional.avx512f": "avx512f",
}


@dataclass(frozen=True)
class CpuFacts:
    name: str
    arch: str
    cores: int | None
    threads: int | None
    memory_bytes: int | None
    isa: tuple[str, ...]
    problems: tuple[Problem, ...]


def _cpuinfo() -> tuple[str | None, set[str]]:
    name, flags = None, set()
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and name is None:
                name = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return name, {_AARCH64_ALIASES.get(f, f) for f in flags}


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _mac_features() -> tuple[str | None, set[str]]:
    name = _sysctl("machdep.cpu.brand_string")
    found = {feat for key, feat in _MAC_SYSCTL.items() if _sysctl(key) == "1"}
    if platform.machine() == "arm64":
        found.add("neon")  # every Apple silicon core has Advanced SIMD
    return name, found


def _isa_and_name() -> tuple[str | None, set[str], list[Problem]]:
    problems: list[Problem] = []
    try:
        if os.path.exists("/proc/cpuinfo"):
            name, flags = _cpuinfo()
        elif platform.system() == "Darwin":
            name, flags = _mac_features()
        else:
            name, flags = None, set()
            problems.append(Problem("cpu:isa", f"no ISA probe for {platform.system()}"))
    except OSError as exc:
        name, flags = None, set()
        problems.append(Problem("cpu:isa", f"could not read CPU flags: {exc}"))
    if platform.machine().lower() in ("aarch64", "arm64"):
        flags.add("neon")
    return name, flags, problems


def probe_cpu() -> CpuFacts:
    """Name, core/thread counts, memory and ML-relevant ISA features of the host CPU."""
    import psutil

    name, flags, problems = _isa_and_name()
    cores = psutil.cpu_count(logical=False)
    threads = psutil.cpu_count(logical=True)
    if cores is None:
        problems.append(Problem("cpu:cores", "physical core count unavailable; using logical"))
        cores = threads
    try:
        memory = int(psutil.virtual_memory().total)
    except (OSError, RuntimeError) as exc:  # pragma: no cover - exotic platforms
        memory = None
        problems.append(Problem("cpu:memory", f"total memory unavailable: {exc}"))
    isa = tuple(f for f in ML_ISA_FEATURES if f in flags)
    return CpuFacts(
        name=name or platform.processor() or platform.machine() or "unknown CPU",
        arch=platform.machine(), cores=cores, threads=threads, memory_bytes=memory,
        isa=isa, problems=tuple(problems),
    )


def maxrss_bytes() -> int:
    """This process's resident-set high-water mark, in bytes (macOS reports bytes, Linux KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_growth(base_rss: int, base_maxrss: int) -> int:
    """Resident-set growth since the base: the current RSS, or the process high-water mark if
    this run raised it (transient peaks below an earlier high-water mark are not visible)."""
    import psutil

    maxrss = maxrss_bytes()
    top = max(psutil.Process().memory_info().rss, maxrss if maxrss > base_maxrss else 0)
    return max(0, top - base_rss)


def machine_fingerprint() -> tuple[tuple[str, str], ...]:
    """Where a run was made: host, OS, Python, CPU, cores, memory, and a fingerprint of them
    (what ``--resume`` and calibrations match on)."""
    cpu = probe_cpu()
    facts = {"hostname": socket.gethostname(), "os": platform.platform(),
             "python": platform.python_version(), "cpu": cpu.name,
             "cores": str(cpu.cores), "memory_bytes": str(cpu.memory_bytes)}
    digest = hashlib.sha256("|".join(f"{k}={facts[k]}" for k in ("hostname", "os", "cpu", "cores",
                                                                  "memory_bytes")).encode())
    facts["fingerprint"] = digest.hexdigest()[:16]
    return tuple(sorted(facts.items()))


def _size(text: str) -> int | None:
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        return None


def cache_bytes(cpus: set[int] | None = None) -> tuple[int | None, int | None]:
    """(private caches, last-level cache) in bytes over the CPUs we may use, from Linux's
    /sys/devices/system/cpu/cpuN/cache: the level-2 caches summed over distinct instances
    (each core has its own), and the level-3 caches summed likewise (one per CCX or socket).
    ``(None, None)`` where the kernel does not say (not Linux)."""
    if cpus is None:
        try:
            cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = set(range(os.cpu_count() or 1))
    seen: dict[tuple[int, str], int] = {}
    for cpu in sorted(cpus):
        root = f"/sys/devices/system/cpu/cpu{cpu}/cache"
        try:
            entries = os.listdir(root)
        except OSError:
            continue
        for entry in entries:
            if not entry.startswith("index"):
                continue
            try:
                with open(f"{root}/{entry}/level", encoding="ascii") as fh:
                    level = int(fh.read())
                with open(f"{root}/{entry}/type", encoding="ascii") as fh:
                    kind = fh.read().strip()
                with open(f"{root}/{entry}/size", encoding="ascii") as fh:
                    size = _size(fh.read())
                with open(f"{root}/{entry}/shared_cpu_list", encoding="ascii") as fh:
                    shared = fh.read().strip()
            except (OSError, ValueError):
                continue
            if kind != "Instruction" and level in (2, 3) and size:
                seen[(level, shared)] = size
    l2 = sum(v for (lvl, _), v in seen.items() if lvl == 2) or None
    l3 = sum(v for (lvl, _), v in seen.items() if lvl == 3) or None
    return l2, l3
