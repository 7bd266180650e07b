"""Data-parallel scaling over N JAX devices (TPU cores, GPUs, or simulated CPU devices).

One network's step runs on a 1-D device mesh (``jax.sharding.Mesh`` with axis ``data``): the
batch is sharded along it (``NamedSharding(mesh, P("data"))``), the weights and optimizer
state are replicated (``P()``), and XLA's SPMD partitioner inserts the gradient all-reduce.
The same program is timed with the existing fenced timer on 1, 2, 4 ... N devices.

Two ways to grow the work with the device count:
- **weak** scaling keeps the per-device batch ``b`` fixed: N devices run a global batch N*b.
  Ideal: the step time stays T1.
- **strong** scaling keeps the global batch ``B`` fixed: each of N devices gets B/N.
  Ideal: the step time falls to T1/N.
Both report ``efficiency = (T1 * B_N / B_1) / (N * T_N)``, the throughput on N devices over N
times the throughput on one (weak: T1/T_N; strong: T1/(N*T_N)); 1.0 is perfect scaling.

Simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, or
:func:`simulate_cpu_devices` before JAX starts) share the same cores, so on them this measures
the partitioned program's overhead, not a speed-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chipfit.analysis.scaling import SCALINGS, ScalingPoint, ScalingResult, device_counts
from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.results import Measurement
from chipfit.spec import TimingConfig

__all__ = ["check_host_memory", "max_simulated_devices", "scale", "simulate_cpu_devices"]

_PLATFORM_ORDER = ("tpu", "gpu", "cpu")
#: Simulated devices per CPU at most (and never more than _MAX_SIMULATED in all): each one
#: is an XLA device with threads and buffers of its own on the same cores.
_SIMULATED_PER_CPU = 4
_MIN_SIMULATED, _MAX_SIMULATED = 8, 64


def max_simulated_devices() -> int:
    """The most simulated CPU devices ``--simulate`` makes here: four per CPU, at least 8 and
    at most 64. Simulated devices share the same cores, so more only add XLA threads and
    memory (100,000 of them started 15,000 threads), never speed."""
    import os

    return min(_MAX_SIMULATED, max(_MIN_SIMULATED, _SIMULATED_PER_CPU * (os.cpu_count() or 1)))


def check_host_memory(net: Any, copies: int, batch: int, dtype: str, mode: str,
                      overhead: int = 0) -> None:
    """Refuse (one line) ``copies`` replicas of ``net``, each at ``batch`` samples plus
    ``overhead`` bytes, that need more than this machine's available memory: the step would
    swap or be killed instead of measured."""
    import psutil

    need = copies * (net.memory_estimate(str(batch), dtype, mode) + overhead)
    free = psutil.virtual_memory().available
    if need > free:
        raise InvalidInputError(f"{copies} x {net.name} {mode} at batch {batch} needs about "
                                f"{need / 2**30:.3g} GiB of host memory; {free / 2**30:.3g} GiB "
                                "is available: use a smaller --batch or fewer --devices")


def simulate_cpu_devices(n: int) -> None:
    """Split the host CPU into ``n`` XLA devices; must run before JAX starts its backends.
    ``n`` is bounded by :func:`max_simulated_devices`."""
    most = max_simulated_devices()
    if not 1 <= n <= most:
        import os

        raise InvalidInputError(f"--devices {n}: simulate 1 to {most} CPU devices here (they "
                                f"share this machine's {os.cpu_count() or 1} CPU(s): more add "
                                "threads, not speed)")
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX already started: fine if it already has enough CPU devices
        if len(jax.devices("cpu")) < n:
            flag = f"XLA_FLAGS=--xla_force_host_platform_device_count={n}"
            raise InvalidInputError(
                f"JAX is already running with {len(jax.devices('cpu'))} CPU device(s) in this "
                f"process; start a new one with {flag}") from None


def scale(workload: str = "mlp", devices: int | None = None, *, batch: int | None = None,
          scaling: str = "weak", mode: str = "train", dtype: str = "float32",
          platform: str | None = None, counts: Sequence[int] | None = None,
          timing: TimingConfig | None = None,
          on_point: Callable[[ScalingPoint], None] | None = None) -> ScalingResult:
    """Time a data-parallel step of ``workload`` on 1, 2, 4 ... ``devices`` JAX devices.

    ``batch`` is the per-device batch for weak scaling and the global batch for strong scaling
    (default: the network's ``scale_batch`` per device). ``platform`` defaults to the first of
    tpu, gpu, cpu that JAX can use here. ``counts`` replaces the 1, 2, 4 ... ladder (one
    device, the baseline, is always measured).
    """
    net = _net(workload)
    if mode not in net.modes:
        raise UnknownNameError("mode", mode, net.modes)
    if scaling not in SCALINGS:
        raise UnknownNameError("scaling", scaling, SCALINGS)
    platform, found = _devices(platform)
    n = len(found) if devices is None else devices
    counts = sorted(set(counts) | {1}) if counts else device_counts(n)  # 1: the baseline
    _check_count(min(counts), len(found), platform)
    _check_count(max(counts), len(found), platform)
    default = net.scale_batch * (max(counts) if scaling == "strong" else 1)
    batches = _global_batches(counts, default if batch is None else batch, scaling)
    if platform == "cpu":  # every simulated device holds its replica in this machine's memory
        check_host_memory(net, max(counts), max(1, batches[-1] // max(counts)), dtype, mode)
    timing = timing or TimingConfig()
    points = []
    for count, global_batch in zip(counts, batches, strict=True):
        m = _measure(net, mode, dtype, found[:count], platform, global_batch, scaling, timing)
        points.append(ScalingPoint(count, global_batch, m))
        if on_point is not None:
            on_point(points[-1])
    simulated = platform == "cpu" and len(found) > 1
    return ScalingResult(workload, mode, dtype, platform, scaling, tuple(points), simulated)


def _net(workload: str) -> Any:
    from chipfit.workloads.nets import Net, workloads

    nets = {w.name: w for w in workloads() if isinstance(w, Net)}
    if workload not in nets:
        raise UnknownNameError("workload for scaling", workload, nets)
    return nets[workload]


def _devices(platform: str | None) -> tuple[str, list[Any]]:
    import jax

    for name in (platform,) if platform else _PLATFORM_ORDER:
        try:
            found = jax.devices(name)
        except Exception as exc:  # unknown or failed backend
            if platform:
                raise InvalidInputError(f"JAX has no {platform} devices here: "
                                        f"{str(exc).splitlines()[0]}") from None
            continue
        if found:
            return name, list(found)
    raise InvalidInputError("JAX found no devices")  # pragma: no cover - cpu always exists


def _check_count(n: int, present: int, platform: str) -> None:
    if n < 1:
        raise InvalidInputError(f"--devices must be at least 1, got {n}")
    if n > present:
        hint = (f"; simulate CPU devices with --simulate or "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={n}"
                if platform == "cpu" else "")
        raise InvalidInputError(f"asked for {n} {platform} devices but JAX sees {present}{hint}")


def _global_batches(counts: Sequence[int], batch: int, scaling: str) -> list[int]:
    if batch < 1:
        raise InvalidInputError(f"--batch must be at least 1, got {batch}")
    if scaling == "weak":
        return [batch * c for c in counts]
    uneven = [c for c in counts if batch % c]
    if uneven:
        raise InvalidInputError(f"global batch {batch} does not split evenly over {uneven[0]} "
                                f"devices; use a multiple of {max(counts)}")
    return [batch] * len(counts)


def _measure(net: Any, mode: str, dtype: str, devices: Sequence[Any], platform: str,
             global_batch: int, scaling: str, timing: TimingConfig) -> Measurement:
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from chipfit.timing.timer import measure
    from chipfit.workloads import _jax_nets
    from chipfit.workloads.nets import LR, MOMENTUM

    mesh = Mesh(np.array(devices), ("data",))
    label = f"jax:{platform}:0" + (f"-{len(devices) - 1}" if len(devices) > 1 else "")
    cost = net.cost(str(global_batch), dtype, mode)
    meta = (("devices", str(len(devices))), ("mesh", f"data:{len(devices)}"),
            ("per_device_batch", str(global_batch // len(devices))), ("scaling", scaling))
    base = dict(workload=net.name, size=str(global_batch), device=label, dtype=dtype, mode=mode,
                flops=cost.flops, bytes_moved=cost.bytes_moved, items_per_call=global_batch)
    try:
        params = jax.device_put(net.init_weights(), NamedSharding(mesh, P()))
        call = _jax_nets.program(net.jax_apply, mode, dtype, params, LR, MOMENTUM)
        x, y = net.sample_batch(global_batch)
        host = (x,) if mode == "inference" else (x, y.astype(np.int32))
        args = jax.device_put(host, NamedSharding(mesh, P("data")))
        result, _ = measure(lambda: call(*args), jax.block_until_ready, timing)
    except Exception as exc:  # a failing point is a result; the sweep goes on
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        status = "oom" if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() else (
            "error")
        return Measurement(status=status, note=text, metadata=meta, **base)
    return Measurement(block_times_s=result.block_times_s, number_per_block=result.number_per_block,
                       first_call_s=result.first_call_s, warmup_calls=result.warmup_calls,
                       stop_reason=result.stop_reason, metadata=meta, **base)
