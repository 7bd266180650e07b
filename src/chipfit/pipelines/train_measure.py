"""``chipfit train --measure``: real training steps of the model here, on this CPU.

A fresh subprocess (so nothing chipfit itself allocated counts) builds the model with random
weights and runs ``steps`` training steps (forward, loss, backward, optimizer step); it
reports the median step time and two peaks (:mod:`chipfit.pipelines._train_worker`): the
allocator's bytes in use at their peak (glibc ``mallinfo2``, sampled after every operator:
the counterpart of a GPU allocator's ``max_memory_allocated``, and of the plan's weights,
gradients, optimizer state and activations, the device runtime overhead excluded), and the
resident set's growth (VmHWM), which adds freed-but-kept heap and library pages.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from chipfit.errors import InvalidInputError

__all__ = ["Measured", "measure_training"]

#: The most memory a measurement may plan to use here, as a fraction of the free memory.
MEMORY_SHARE = 0.5
STEPS = 4  # two sampled (optimizer state made, then the peak), two timed
TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Measured:
    """Real training steps here, beside the plan for the same set-up on this CPU."""

    ok: bool
    why: str = ""
    steps: int = 0
    batch: int = 0
    seq_len: int = 0
    precision: str = "fp32"
    step_s: float = math.nan
    peak_bytes: float = math.nan
    planned_bytes: float = math.nan
    rss_peak_bytes: float = math.nan
    method: str = ("malloc bytes in use (glibc mallinfo2) at their peak over the steps, "
                   "sampled after every torch operator, in a fresh subprocess")
    source: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"ok": self.ok, "why": self.why, "steps": self.steps, "batch": self.batch,
                "seq_len": self.seq_len or None, "precision": self.precision,
                "step_s": num(self.step_s), "peak_bytes": num(self.peak_bytes),
                "planned_bytes": num(self.planned_bytes),
                "rss_peak_bytes": num(self.rss_peak_bytes), "method": self.method,
                "source": self.source}


def _available() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.nan


def measure_training(model: str, tmodel: Any, setup: Any, *, inputs: Any = (),
                     batch: int = 4, seq_len: int = 256, steps: int = STEPS,
                     progress: Any = None) -> Measured:
    """Run ``steps`` real training steps of ``model`` here (fp32, plain PyTorch: full
    training; LoRA/QLoRA need peft and bitsandbytes and are not measured) and compare the
    peak with the plan's memory for the same batch on one device."""
    from dataclasses import replace

    from chipfit.analysis.train_plan import Parallel, memory_plan

    seq = min(seq_len, setup.seq_len) if tmodel.arch is not None else 0
    local = replace(setup, precision="fp32", batch=batch, seq_len=seq or setup.seq_len)
    if setup.method != "full":
        return Measured(False, f"--measure runs full training only ({setup.method} needs "
                        "peft/bitsandbytes, not required by chipfit)")
    if model.endswith(".json") and tmodel.arch is None:
        return Measured(False, "--measure builds decoder configs, built-in models and "
                        "factories; wrap an encoder config in a factory to measure it")
    if setup.optimizer == "adam8bit":
        return Measured(False, "--measure runs adam or sgd (8-bit Adam needs bitsandbytes)")
    planned = memory_plan(tmodel, local, Parallel(), 1, 0.0)
    free = _available()
    if math.isfinite(free) and planned.total > MEMORY_SHARE * free:
        return Measured(False, f"planned {planned.total / 2**30:.1f} GiB for batch {batch} is "
                        f"more than half the free memory here ({free / 2**30:.1f} GiB)",
                        planned_bytes=planned.total)
    spec = {"model": model, "batch": batch, "seq_len": seq, "steps": steps,
            "optimizer": setup.optimizer, "llm": tmodel.arch is not None,
            "inputs": list(inputs)}
    if progress:
        progress(f"measuring {steps} training steps of {tmodel.name} here (batch {batch})")
    try:
        done = subprocess.run([sys.executable, "-m", "chipfit.pipelines._train_worker",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Measured(False, f"the steps took longer than {TIMEOUT_S:.0f} s",
                        planned_bytes=planned.total)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return Measured(False, f"the measuring process failed: {tail}",
                        planned_bytes=planned.total)
    data = json.loads(lines[-1])
    if "error" in data:
        raise InvalidInputError(str(data["error"])[:200])
    return Measured(True, "", steps, batch, seq, "fp32", float(data["step_s"]),
                    float(data["heap_peak_bytes"]), planned.total,
                    float(data["rss_peak_bytes"]))
