"""Multi-device scaling with torch: data-parallel steps of a built-in network over N devices.

Each of N processes holds a replica of the network (``DistributedDataParallel``), runs the
step on its own batch, and averages gradients with the others: ``gloo`` between CPU processes,
``nccl`` between GPUs (one process per GPU). A CPU "device" here is one process with a fixed
share of the cores (``threads_per_process``, the same at every N), so adding processes adds
hardware the way adding GPUs does.

Weak scaling (Gustafson) keeps the per-process batch fixed, so N processes do N times the
work per step; strong scaling splits one global batch N ways. As for JAX
(:mod:`chipfit.pipelines.scale_jax`), throughput is ``global batch / step time`` and the scaling
efficiency is throughput(N) / (N * throughput(1)): for weak scaling that is step time(1) /
step time(N), where 1.0 means the gradient exchange costs nothing and 0.5 means half of the
added hardware is lost to it.

Steps are timed identically on every rank (collectives need every rank to take every step),
fenced by the rank's backend session (its ``wait``, through :mod:`chipfit.timing.steps`), and a
step's time is that of the slowest rank (gathered
with an all-reduce MAX), since the others wait for it at the next gradient exchange. Each
process count runs in freshly spawned processes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chipfit.errors import ChipfitError, InvalidInputError, UnknownNameError
from chipfit.results import Measurement
from chipfit.spec import DeviceRef, parse_dtype

__all__ = ["scale_torch"]

_INIT_TIMEOUT_S = 300  # a rank that never joins fails the run instead of hanging it
_MAX_DEFAULT_CPU_PROCESSES = 4
#: Host memory a CPU rank takes besides its network (an interpreter with torch loaded).
_RANK_OVERHEAD_BYTES = 400 * 2**20
#: How often the parent looks at its ranks while they run (and so how soon Ctrl-C lands).
_POLL_S = 0.2


@dataclass(frozen=True)
class _Spec:
    """What every rank needs to know (picklable: sent to spawned processes)."""

    workload: str
    mode: str
    batch: int  # per process
    dtype: str
    device: str  # cpu | cuda
    threads: int
    warmup: int
    steps: int | None
    budget_s: float
    port: int
    out: str  # rank 0 writes its report here ("" : it only returns it)
    host: str = "127.0.0.1"  # rank 0's address (another node's, for a fleet)
    gpu_per_process: bool = False  # each rank sees only its own GPU (Ray): it is index 0


# ---- the parent ---------------------------------------------------------------------------
#: A port found free can be taken by another process before rank 0 listens on it (another
#: job on the machine starting a server): the launch is retried on a new port this often.
_PORT_ATTEMPTS = 3


class _PortTaken(ChipfitError):
    """Rank 0 could not listen on the port chosen for the group (EADDRINUSE)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



def checked_request(workload: str, mode: str, scaling: str, warmup: int, steps: int | None,
                    budget_s: float) -> Any:
    """The network of a scaling request whose mode, scaling and step settings are valid
    (the same checks for one machine and for a Ray fleet)."""
    from chipfit.analysis.scaling import SCALINGS

    net = _network(workload)
    if mode not in net.modes:
        raise UnknownNameError("mode", mode, net.modes)
    if scaling not in SCALINGS:
        raise UnknownNameError("scaling", scaling, SCALINGS)
    if warmup < 1 or (steps is not None and steps < 1) or budget_s <= 0:
        raise InvalidInputError("warmup, steps and budget_s must be positive")
    return net

def _scalable(workload: Any) -> bool:
    """A network the DDP step can train: a torch module and one class label per sample (a
    ``data_parallel = False`` workload, such as the CTC recogniser, trains otherwise)."""
    return hasattr(workload, "torch_module") and getattr(workload, "data_parallel", True)


def _network(workload: str) -> Any:
    from chipfit.workloads import all_workloads, get_workload

    found = get_workload(workload)
    if not _scalable(found):
        nets = ", ".join(w.name for w in all_workloads() if _scalable(w))
        if hasattr(found, "torch_module"):
            raise InvalidInputError(f"{workload} trains with its own loss, not one class label "
                                    f"per sample; data-parallel scaling runs one of: {nets}")
        raise InvalidInputError(f"{workload} is not a trainable network; data-parallel scaling "
                                f"runs one of: {nets}")
    return found


def _platform(platform: str | None) -> tuple[str, int]:
    """``cpu`` or ``cuda`` (``gpu`` is an alias), and how many such devices there are."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    platform = {"gpu": "cuda"}.get(platform or "", platform) or ("cuda" if gpus else "cpu")
    if platform not in ("cpu", "cuda"):
        raise InvalidInputError(f"platform {platform!r}: torch scaling runs on cpu or cuda")
    return platform, gpus


def _counts(processes: int | None, counts: Sequence[int] | None, platform: str,
            gpus: int) -> list[int]:
    from chipfit.analysis.scaling import device_counts

    if counts:
        wanted = sorted({1, *counts})
    else:
        default = gpus if platform == "cuda" else min(_physical_cores(),
                                                       _MAX_DEFAULT_CPU_PROCESSES)
        wanted = device_counts(max(1, processes or default))
    if wanted[0] < 1:
        raise InvalidInputError("process counts must be 1 or more")
    if platform == "cuda" and wanted[-1] > gpus:
        raise InvalidInputError(f"{wanted[-1]} processes need as many CUDA devices; {gpus} found")
    most = max_cpu_processes()
    if platform == "cpu" and wanted[-1] > most:
        raise InvalidInputError(f"{wanted[-1]} CPU processes: at most {most} here (each is a "
                                f"device with its own share of this machine's "
                                f"{os.cpu_count() or 1} CPU(s))")
    return wanted


def max_cpu_processes() -> int:
    """The most CPU ranks one machine runs: one per CPU (at least the default 4). Each rank is
    a device with its own cores; more would only take turns on them."""
    return max(_MAX_DEFAULT_CPU_PROCESSES, os.cpu_count() or 1)


def _physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _batches(counts: Sequence[int], batch: int, scaling: str) -> list[int]:
    """Per-process batch at each count: fixed (weak) or the global batch split (strong)."""
    if batch < 1:
        raise InvalidInputError(f"batch must be at least 1, got {batch}")
    if scaling == "weak":
        return [batch] * len(counts)
    uneven = [c for c in counts if batch % c]
    if uneven:
        raise InvalidInputError(f"global batch {batch} does not split evenly over {uneven[0]} "
                                f"processes; use a multiple of {max(counts)}")
    return [batch // c for c in counts]


def scale_torch(workload: str = "mlp", processes: int | None = None, *,
                batch: int | None = None, scaling: str = "weak", mode: str = "train",
                dtype: str = "float32", platform: str | None = None,
                counts: Sequence[int] | None = None, threads_per_process: int | None = None,
                warmup: int = 3, steps: int | None = None, budget_s: float = 2.0,
                on_point: Callable[[Any], None] | None = None) -> Any:
    """Data-parallel ``mode`` steps of ``workload`` on 1, 2, 4 ... ``processes`` processes.

    Returns a :class:`chipfit.analysis.scaling.ScalingResult` (the same shape ``chipfit scale``
    prints for JAX), every point a measured step. ``batch`` is per process for weak scaling and
    global for strong (default: the network's ``scale_batch`` per process). ``platform``:
    ``cuda`` (one GPU per process, nccl) when a GPU is present, else ``cpu`` (gloo, each
    process with ``threads_per_process`` threads: the physical cores over the largest count).
    ``counts`` picks the process counts instead (1 is always added: it is the baseline). With
    ``steps`` unset, rank 0 picks a step count that fills about ``budget_s`` (5 to 200).
    """
    from chipfit.analysis.scaling import ScalingPoint, ScalingResult

    net = checked_request(workload, mode, scaling, warmup, steps, budget_s)
    platform, gpus = _platform(platform)
    chosen = _counts(processes, counts, platform, gpus)
    default_batch = net.scale_batch * (chosen[-1] if scaling == "strong" else 1)
    per_process = _batches(chosen, default_batch if batch is None else batch, scaling)
    if platform == "cpu":
        from chipfit.pipelines.scale_jax import check_host_memory

        check_host_memory(net, chosen[-1], per_process[-1], parse_dtype(dtype), mode,
                          _RANK_OVERHEAD_BYTES)
    threads = threads_per_process or max(1, _physical_cores() // chosen[-1])
    points = []
    with tempfile.TemporaryDirectory(prefix="chipfit-scale-") as tmp:
        for n, b in zip(chosen, per_process, strict=True):
            spec = _Spec(workload, mode, b, parse_dtype(dtype), platform, threads, warmup,
                         steps, budget_s, 0, str(Path(tmp) / f"{n}.json"))
            for attempt in range(_PORT_ATTEMPTS):
                try:
                    measured = _launch(replace(spec, port=_free_port()), n, scaling, net)
                    break
                except _PortTaken:
                    if attempt == _PORT_ATTEMPTS - 1:
                        raise
            points.append(ScalingPoint(n, n * b, measured))
            if on_point is not None:
                on_point(points[-1])
    return ScalingResult(workload, mode, parse_dtype(dtype), platform, scaling, tuple(points))


def _launch(spec: _Spec, n: int, scaling: str, net: Any) -> Measurement:
    """Run ``n`` ranks; their timing as a Measurement of the whole data-parallel step. Ctrl-C
    or SIGTERM (or any failure here) ends every rank before it propagates: none outlives
    chipfit, and the interpreter's exit never waits on them."""
    import torch.multiprocessing as mp

    context = mp.start_processes(_rank_main, args=(n, spec), nprocs=n, join=False,
                                 start_method="spawn")
    try:
        while not context.join(timeout=_POLL_S):
            pass
    except mp.ProcessRaisedException as exc:
        last = str(exc).strip().splitlines()[-1]
        error = _PortTaken if "EADDRINUSE" in last else ChipfitError
        raise error(f"data-parallel {spec.mode} with {n} process(es) failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise ChipfitError(f"data-parallel {spec.mode} with {n} process(es) failed: a process "
                           f"died (exit code {exc.exit_code})") from None
    finally:
        _end(context.processes)
    data = json.loads(Path(spec.out).read_text(encoding="utf-8"))
    return step_measurement(spec, n, scaling, net, data)


def _end(processes: Sequence[Any], grace_s: float = 2.0) -> None:
    """Stop every rank still running: SIGTERM, then SIGKILL after ``grace_s``."""
    import time

    alive = [p for p in processes if p.is_alive()]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in alive:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def step_measurement(spec: _Spec, n: int, scaling: str, net: Any, data: dict[str, Any],
                     label: str | None = None, extra: tuple[tuple[str, str], ...] = ()
                     ) -> Measurement:
    """Rank 0's report of ``n`` ranks as a Measurement of the whole data-parallel step."""
    cost = net.cost(str(n * spec.batch), spec.dtype, spec.mode)
    meta = (("devices", str(n)), ("processes", str(n)), ("per_device_batch", str(spec.batch)),
            ("scaling", scaling), ("comm_backend", "nccl" if spec.device == "cuda" else "gloo"),
            ("threads_per_process", str(spec.threads)),
            ("replica_max_diff", repr(data["replica_max_diff"])),
            ("step_time", "slowest rank per step")) + extra
    return Measurement(workload=spec.workload, size=str(n * spec.batch),
                       device=label or _label(spec, n), dtype=spec.dtype, mode=spec.mode,
                       block_times_s=tuple(data["step_times_s"]), number_per_block=1,
                       first_call_s=data["first_step_s"], warmup_calls=spec.warmup,
                       stop_reason="fixed_steps" if spec.steps else "budget",
                       flops=cost.flops, bytes_moved=cost.bytes_moved,
                       items_per_call=n * spec.batch, metadata=meta)


def _label(spec: _Spec, n: int) -> str:
    if spec.device == "cuda":
        return "torch:cuda:0" + (f"-{n - 1}" if n > 1 else "")
    return f"torch:cpu@{spec.threads}t" + (f" x{n} processes" if n > 1 else "")


# ---- one rank -----------------------------------------------------------------------------
def _rank_main(rank: int, world: int, spec: _Spec) -> dict[str, Any]:
    """Body of each rank (a spawned process or a Ray task): join the group, run steps, time
    them; the report (rank 0 also writes it to ``spec.out`` when set)."""
    import torch
    import torch.distributed as dist

    from chipfit.backends import get_backend

    cuda = spec.device == "cuda"
    # The session pins the CPU threads, or fences the rank's GPU: its wait is the timer's fence.
    index = 0 if spec.gpu_per_process else rank
    ref = DeviceRef("torch", "cuda", index) if cuda else DeviceRef("torch", "cpu", None,
                                                                   spec.threads)
    with get_backend("torch").session(ref) as session:
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                init_method=f"tcp://{spec.host}:{spec.port}",
                                timeout=dt.timedelta(seconds=_INIT_TIMEOUT_S))
        try:
            device = session.handle
            if cuda:
                torch.cuda.set_device(device)
            step, model = _step(spec, rank, device)
            report = _time_steps(spec, step, session.wait, device)
            report["replica_max_diff"] = _replica_diff(model)
            if rank == 0 and spec.out:
                Path(spec.out).write_text(json.dumps(report), encoding="utf-8")
        finally:
            dist.destroy_process_group()
    return report


def _step(spec: _Spec, rank: int, device: Any) -> tuple[Callable[[], None], Any]:
    """One step on this rank's own (seeded) batch, and the model whose replicas must agree.

    train: DistributedDataParallel over every parameter; finetune: only the ``head`` trains
    (the frozen backbone's parameters are not exchanged); inference: forward passes alone,
    with nothing to exchange.
    """
    import contextlib

    import torch

    from chipfit.workloads import _torch_nets

    net = _network(spec.workload)
    module = _torch_nets.load_weights(net.torch_module(), net.init_weights()).to(device)
    x, y = (torch.from_numpy(a).to(device) for a in net.sample_batch(spec.batch, seed=1 + rank))
    cast = (contextlib.nullcontext() if spec.dtype == "float32" else
            torch.autocast(device_type=device.type, dtype=getattr(torch, spec.dtype)))
    if spec.mode == "inference":
        module.eval()

        def infer() -> None:
            with torch.inference_mode(), cast:
                module(x)

        return infer, module
    return _ddp_step(module, x, y, cast, spec.mode, device), module


def _ddp_step(module: Any, x: Any, y: Any, cast: Any, mode: str,
              device: Any) -> Callable[[], None]:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from chipfit.workloads import _torch_nets
    from chipfit.workloads.nets import LR, MOMENTUM

    for name, param in module.named_parameters():
        param.requires_grad_(mode == "train" or name.startswith("head."))
    model = DistributedDataParallel(_torch_nets.WithLoss(module),
                                    device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR,
                                momentum=MOMENTUM)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cast:
            loss = model(x, y)
        loss.backward()  # DDP all-reduces the gradients during backward
        optimizer.step()

    return step


def _time_steps(spec: _Spec, step: Callable[[], None], wait: Callable[[Any], None],
                device: Any) -> dict[str, Any]:
    """Fenced per-step times (the slowest rank's for each step) and the first step's time.

    Every block is fenced by the session's ``wait`` (:mod:`chipfit.timing.steps`); the step
    count is fixed up front, the same on every rank, because each step is a collective.
    """
    import torch
    import torch.distributed as dist

    from chipfit.timing.steps import fenced_block, fenced_calls

    first = fenced_block(step, wait)
    per_step = (first + fenced_block(step, wait, spec.warmup - 1)) / spec.warmup
    chosen = spec.steps or min(200, max(5, math.ceil(spec.budget_s / max(per_step, 1e-9))))
    count = torch.tensor([chosen], dtype=torch.int64, device=device)
    dist.broadcast(count, src=0)  # every rank must take the same number of steps
    dist.barrier()
    times = fenced_calls(step, wait, int(count.item()))
    slowest = torch.tensor(times, dtype=torch.float64, device=device)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return {"step_times_s": slowest.cpu().tolist(), "first_step_s": first}


def _replica_diff(model: Any) -> float:
    """Largest difference of any parameter between this replica and rank 0's (0 when in step)."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        diff = (flat - reference).abs().max().reshape(1)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())
