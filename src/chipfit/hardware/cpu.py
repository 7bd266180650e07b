"""Facts about the host CPU, read from the operating system without any ML framework.

CPU discovery must always succeed: every probe here degrades to ``None``/empty and records
why in the returned problems instead of raising.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import resource
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from chipfit.results import Problem

__all__ = ["INT8_DOT_FEATURES", "ML_ISA_FEATURES", "Clock", "CpuFacts", "CpuInfo", "Peak",
           "best_peak", "cache_bytes", "fp32_flops_per_cycle", "int8_saturates",
           "local_theoretical_peak", "max_clock", "parse_cpuinfo", "probe_cpu",
           "theoretical_peak"]

# ISA extensions that change what ML kernels a CPU can run fast, in display order.
# Linux /proc/cpuinfo names; macOS and aarch64 names are mapped onto these below.
ML_ISA_FEATURES = (
    "sse4_2", "fma", "f16c", "avx", "avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16",
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


# Instructions that multiply int8 by int8 into int32 without an int16 intermediate: without
# one, x86 int8 GEMMs (u8 x s8 through vpmaddubsw) saturate pairs of products in int16.
INT8_DOT_FEATURES = ("avx_vnni", "avx512_vnni", "amx_int8")


def int8_saturates(arch: str, isa: tuple[str, ...]) -> bool:
    """Whether int8 matmuls on this CPU go through a saturating int16 step (x86 without
    VNNI or AMX), where 8-bit weights lose accuracy and 7-bit ones (ONNX Runtime's
    ``reduce_range``) do not. Pure: ``arch`` is ``platform.machine()``, ``isa`` what
    :func:`probe_cpu` lists."""
    x86 = arch.lower() in ("x86_64", "amd64", "i386", "i686", "x86")
    return x86 and not any(f in isa for f in INT8_DOT_FEATURES)


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


# ---- peaks: the clock the cores reach, the FLOPs per cycle their ISA allows -----------------
@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the cores' arithmetic: vendor, family, every "cpu MHz"
    reading and the feature flags (never assumed: read)."""

    vendor: str
    family: int | None
    mhz: tuple[float, ...]
    flags: frozenset[str]
    arch: str


def parse_cpuinfo(text: str, arch: str | None = None) -> CpuInfo:
    """The fields of /proc/cpuinfo ``text`` a peak needs (pure: tests hand it other CPUs')."""
    vendor, family, mhz, flags = "", None, [], frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("vendor_id", "cpu implementer") and not vendor:
            vendor = value
        elif key == "cpu family" and family is None:
            try:
                family = int(value, 0)
            except ValueError:
                family = None
        elif key == "cpu mhz":
            try:
                value_mhz = float(value)
            except ValueError:
                continue
            if math.isfinite(value_mhz) and 0 < value_mhz < 100_000:
                mhz.append(value_mhz)
        elif key in ("flags", "features") and not flags:
            flags = frozenset(_AARCH64_ALIASES.get(f, f) for f in value.split())
    return CpuInfo(vendor, family, tuple(mhz), flags, arch or platform.machine().lower())


#: Vector FMA (or add + multiply) pipes per core assumed: two on every x86 core since Sandy
#: Bridge/Haswell and Zen, and on Arm Neoverse N cores. Wider cores (Apple, Neoverse V) have
#: more: the peak then rests on the best measured rate (see :func:`best_peak`).
VECTOR_PIPES = 2


def fp32_flops_per_cycle(info: CpuInfo) -> tuple[float, str] | None:
    """FP32 FLOPs one core can issue per cycle, from the flags /proc/cpuinfo lists, and how;
    None where the flags name no vector unit chipfit knows."""
    flags, x86 = info.flags, info.arch in ("x86_64", "amd64", "i686", "i386")
    note = ""
    if "avx512f" in flags:
        lanes, isa = 16, "avx512f"
        # Zen 4 (family 0x19) runs a 512-bit operation as two 256-bit halves
        if info.vendor == "AuthenticAMD" and info.family is not None and info.family < 0x1A:
            lanes, note = 8, " run as 2x256-bit on AMD family 0x19"
    elif "avx" in flags:
        lanes, isa = 8, "avx"
    elif "sse2" in flags or "sse" in flags:
        lanes, isa = 4, "sse"
    elif "neon" in flags or "sve" in flags or (not x86 and info.arch in ("aarch64", "arm64")):
        lanes, isa = 4, "neon" if "sve" not in flags else "sve (128-bit assumed)"
    else:
        return None
    fma = "fma" in flags or "fma4" in flags or isa.startswith(("neon", "sve"))
    per_lane = 2 if fma else 1  # one FMA = 2 FLOPs; without FMA one add and one multiply pipe
    flops = VECTOR_PIPES * lanes * per_lane
    how = (f"{VECTOR_PIPES} pipes x {lanes} FP32 lanes ({isa}{note}) x "
           f"{'2 (FMA)' if fma else '1 (add or multiply)'}")
    return float(flops), how


@dataclass(frozen=True)
class Clock:
    hz: float
    basis: str


def _read_number(path: str) -> float | None:
    try:
        with open(path, encoding="ascii") as fh:
            value = float(fh.read().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def max_clock(cpus: Iterable[int] | None = None, *, root: str = "/sys/devices/system/cpu",
              cpuinfo: CpuInfo | None = None) -> Clock | None:
    """The highest clock the CPUs we may use reach, with where it was read: cpufreq's
    ``cpuinfo_max_freq`` (the hardware's, boost included) and ``scaling_max_freq`` (the
    policy's), and the highest "cpu MHz" /proc/cpuinfo shows. A VM often exposes only the
    last, the nominal TSC clock, below what the cores run at: :func:`best_peak` then lets the
    best measured rate stand above it."""
    if cpus is None:
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = range(os.cpu_count() or 1)
    found: list[tuple[float, str]] = []
    for cpu in cpus:
        for name in ("cpuinfo_max_freq", "scaling_max_freq"):
            khz = _read_number(f"{root}/cpu{cpu}/cpufreq/{name}")
            if khz is not None:
                found.append((khz * 1e3, f"cpufreq {name}"))
    if cpuinfo is None:
        cpuinfo = _local_cpuinfo()
    if cpuinfo is not None and cpuinfo.mhz:
        found.append((max(cpuinfo.mhz) * 1e6, '/proc/cpuinfo "cpu MHz" (highest seen)'))
    if not found:
        return None
    hz, basis = max(found)
    return Clock(hz, f"{hz / 1e6:.0f} MHz from {basis}")


def _local_cpuinfo() -> CpuInfo | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return parse_cpuinfo(fh.read())
    except OSError:
        return None


@dataclass(frozen=True)
class Peak:
    """A FP32 FLOP/s ceiling and its provenance: ``catalog`` (a datasheet figure),
    ``estimated`` (theoretical: cores x clock x FLOPs per cycle, each read here) or
    ``measured`` (the best rate reached, where it beats every stated peak)."""

    flops: float
    source: str
    basis: str


def theoretical_peak(cores: int, clock: Clock | None, info: CpuInfo | None) -> Peak | None:
    """``cores`` x the highest clock x the FP32 FLOPs per cycle of the ISA (pure)."""
    per_cycle = fp32_flops_per_cycle(info) if info is not None else None
    if not cores or cores < 1 or clock is None or per_cycle is None:
        return None
    flops = cores * clock.hz * per_cycle[0]
    return Peak(flops, "estimated", f"theoretical: {cores} cores x {clock.basis} x "
                                     f"{per_cycle[0]:g} FP32 FLOP/cycle ({per_cycle[1]})")


def local_theoretical_peak(cores: int | None = None) -> Peak | None:
    """This machine's theoretical FP32 peak over ``cores`` (default: the physical cores)."""
    info = _local_cpuinfo()
    if cores is None:
        cores = probe_cpu().cores
    return theoretical_peak(cores or 0, max_clock(cpuinfo=info), info)


def best_peak(stated: Iterable[Peak | None], measured: float | None = None) -> Peak | None:
    """The ceiling a measured rate can never exceed: the highest stated peak, or the best
    ``measured`` FLOP/s where it is higher (the cores ran faster than the clock the stated
    peaks assume), each with its basis (pure)."""
    peaks = [p for p in stated if p is not None and math.isfinite(p.flops) and p.flops > 0]
    top = max(peaks, key=lambda p: p.flops, default=None)
    if measured is None or not math.isfinite(measured) or measured <= 0 or (
            top is not None and measured <= top.flops):
        return top
    if top is None:
        return Peak(measured, "measured", "best measured rate (no stated peak)")
    return Peak(measured, "measured",
                f"best measured rate, above the {top.source} peak of {top.flops / 1e9:.0f} "
                f"GFLOP/s ({top.basis}): the cores ran faster than that assumes")
