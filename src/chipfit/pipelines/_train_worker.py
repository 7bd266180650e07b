"""The process ``chipfit train --measure`` runs: real training steps, peak RSS growth.

Reads one JSON argument (model, batch, seq_len, steps, optimizer, llm, inputs), prints one
JSON line, or ``error``:

- ``step_s``: the median of the timed steps after the first;
- ``heap_peak_bytes``: the allocator's own figure: glibc's bytes in use (``mallinfo2``:
  ``uordblks + hblkhd``, what torch's CPU allocator has taken from malloc and not freed),
  sampled after every torch operator of the steps (a ``TorchDispatchMode``; the autograd
  engine runs a CPU backward on the calling thread, so its operators are sampled too), minus
  the same figure before the model was built;
- ``rss_peak_bytes``: VmHWM after the steps minus VmRSS before the model was built (the
  high-water mark reset with ``/proc/self/clear_refs`` first): what the process really held,
  freed-but-kept heap, thread stacks and library pages included.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from typing import Any


def _status(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return float(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _build(spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    import torch

    if spec["llm"]:
        from chipfit.workloads.llm import build_model, load_config

        cfg = load_config(spec["model"])
        model = build_model(cfg, device="cpu", dtype="float32").train()
        vocab = int(model.config.vocab_size)
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (spec["batch"], spec["seq_len"]), generator=gen)

        def loss(m: Any, args: tuple[Any, ...]) -> Any:
            return m(input_ids=args[0], labels=args[0]).loss

        return model, (ids,), loss
    from chipfit.pipelines.train import _source

    _, build, make_inputs, loss_fn = _source(spec["model"], spec["inputs"])
    model = build().float().train()
    return model, make_inputs(spec["batch"]), loss_fn


def _warm(spec: dict[str, Any]) -> None:
    """One step of a tiny model of the same family, so the code pages and thread pools the
    steps touch are resident before the baseline is read."""
    import gc

    import torch

    if not spec["llm"]:
        from chipfit.pipelines import train  # noqa: F401 - the loaders' imports
        return
    from chipfit.workloads.llm import build_model, load_config, tiny_config

    family = str(load_config(spec["model"]).get("model_type", "llama"))
    try:
        model = build_model(tiny_config(family, layers=1), device="cpu").train()
    except Exception:  # noqa: BLE001 - a family tiny_config cannot shape: no warm-up
        return
    ids = torch.randint(0, 200, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    torch.optim.AdamW(model.parameters(), foreach=False).step()
    del model
    gc.collect()


class _Mallinfo2:
    """glibc's ``mallinfo2()``: bytes malloc has handed out and not had back."""

    def __init__(self) -> None:
        import ctypes

        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL(None)
        self._fn = libc.mallinfo2
        self._fn.restype = Info

    def __call__(self) -> int:
        info = self._fn()
        return int(info.uordblks + info.hblkhd)


def _heap_mode(sample: Any) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Peak(TorchDispatchMode):
        peak = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            Peak.peak = max(Peak.peak, sample())
            return out

    return Peak


def main(raw: str) -> dict[str, Any]:
    import torch

    spec = json.loads(raw)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    _warm(spec)  # libraries imported and kernels paged in before the baseline
    sample = _Mallinfo2()
    heap_base = sample()
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    model, args, loss = _build(spec)
    params = [p for p in model.parameters() if p.requires_grad]
    if spec["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    else:
        opt = torch.optim.AdamW(params, lr=1e-5, foreach=False)
    mode = _heap_mode(sample)
    mode.peak = sample()
    times = []
    for i in range(spec["steps"]):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if i < 2:  # the first step makes the optimizer state, the second peaks with it
            with mode():
                loss(model, args).backward()
                opt.step()
        else:  # timed without the sampling
            loss(model, args).backward()
            opt.step()
            times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times or [math.nan]),
            "heap_peak_bytes": mode.peak - heap_base,
            "rss_peak_bytes": _status("VmHWM") - base}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1])
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        result = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    print(json.dumps(result))
