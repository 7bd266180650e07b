"""chipfit: which processor should run this model - CPU, GPU or TPU - at which batch size, and why.

``import chipfit`` is cheap: it imports no torch, jax, ray or matplotlib and touches no
hardware. The functions below import what they need when called.
"""

from __future__ import annotations

from typing import Any

from chipfit._version import __version__
from chipfit.errors import (
    BackendUnavailableError,
    ChipfitError,
    InvalidInputError,
    OutOfMemoryError,
    SchemaError,
    UnknownNameError,
    UnsafeFileError,
    UnsupportedError,
    UsageError,
)
from chipfit.results import Cost, DeviceInfo, Discovery, Measurement, Problem, Run
from chipfit.spec import DeviceRef, Job, TimingConfig

__all__ = [
    "BackendUnavailableError", "ChipfitError", "Cost", "DeviceInfo", "DeviceRef", "Discovery",
    "InvalidInputError", "Job", "Measurement", "OutOfMemoryError", "Problem", "Run",
    "SchemaError", "TimingConfig", "UnknownNameError", "UnsafeFileError", "UnsupportedError",
    "UsageError", "__version__", "advise", "analyze_run", "bench", "calibrate", "catalog",
    "catalog_check", "check_claims", "compare_runs", "costs", "discover", "feed", "llm",
    "load_run", "measure", "measure_endpoint", "open_store", "predict", "run_suite", "scale",
    "scale_torch", "serve", "sweep", "to_dataframe", "train",
    "validate", "write_report",
]


def __dir__() -> list[str]:
    """The public names only (not ``Any`` or ``annotations``, which typing leaves behind)."""
    return sorted(__all__)


def discover(backends: Any = None) -> Discovery:
    """Every usable device of the installed frameworks, with reasons for what is missing."""
    from chipfit.pipelines.measure import discover as _discover

    return _discover(backends)


def measure(workload: str, size: Any, device: Any = "torch:cpu", **kwargs: Any) -> Measurement:
    """Measure one workload at one size on one device; see :func:`chipfit.pipelines.measure.measure`."""
    from chipfit.pipelines.measure import measure as _measure

    return _measure(workload, size, device, **kwargs)


def bench(workloads: Any = ("matmul", "elementwise"), devices: Any = None, **kwargs: Any) -> Run:
    """Run a suite, like ``chipfit bench``; see :func:`chipfit.pipelines.bench.bench`."""
    from chipfit.pipelines.bench import bench as _bench

    return _bench(workloads, devices, **kwargs)


def load_run(path: Any) -> Run:
    """Read a results JSON file written by ``--json`` or kept under the data directory."""
    from chipfit.store.runs import load_run as _load

    return _load(path)


def advise(model: Any, example_inputs: Any = None, **kwargs: Any) -> Any:
    """Which processor should run ``model``, and why; see :func:`chipfit.pipelines.advise.advise`."""
    from dataclasses import replace

    from chipfit.pipelines.advise import advise as _advise
    from chipfit.report.advise_view import advice_summary

    advice = _advise(model, example_inputs, **kwargs)
    return replace(advice, summary=advice_summary(advice))  # str(advice): the verdict first


def measure_endpoint(url: str, model: str = "", *, save: bool = False, db: Any = None,
                     **kwargs: Any) -> Any:
    """Measure a running OpenAI-compatible streaming LLM server at ``url`` (like ``chipfit llm
    MODEL --endpoint URL``): TTFT, TPOT/ITL and e2e percentiles, token rates and goodput,
    beside the prediction of ``predict_model`` on ``hardware``; see
    :func:`chipfit.pipelines.endpoint.measure_endpoint` for the workload's keywords. ``save``
    (or ``db``, a database path) keeps every request in the results database as it ends."""
    from chipfit.pipelines.endpoint import measure_endpoint as _measure

    if not save and db is None:
        return _measure(url, model, **kwargs)
    from chipfit.store import open_store as _open

    with _open(db) as store:
        return _measure(url, model, store=store, **kwargs)


def open_store(path: Any = None) -> Any:
    """The results database (default: chipfit.sqlite3 under the data directory)."""
    from chipfit.store import open_store as _open

    return _open(path)


def to_dataframe(runs: Any) -> Any:
    """One pandas row per measurement (needs pandas)."""
    from chipfit.store.frames import to_dataframe as _frame

    return _frame(runs)


def compare_runs(a: Any, b: Any, **kwargs: Any) -> Any:
    """Compare run ``b`` against baseline ``a``: ratios, Mann-Whitney U, regressions."""
    from chipfit.analysis.compare import compare_runs as _compare

    return _compare(a, b, **kwargs)


def scale(workload: str = "mlp", devices: Any = None, **kwargs: Any) -> Any:
    """Data-parallel scaling over N JAX devices, like ``chipfit scale``."""
    from chipfit.pipelines.scale_jax import scale as _scale

    return _scale(workload, devices, **kwargs)


def scale_torch(workload: str = "mlp", processes: Any = None, **kwargs: Any) -> Any:
    """Data-parallel scaling of a network over N torch processes or GPUs."""
    from chipfit.pipelines.scale_torch import scale_torch as _scale

    return _scale(workload, processes, **kwargs)


def sweep(workload: str, devices: Any = None, **kwargs: Any) -> Any:
    """Measure ``workload`` over a size ladder and find crossovers, like ``chipfit sweep``."""
    from chipfit.pipelines.sweep import sweep as _sweep

    return _sweep(workload, devices, **kwargs)


def analyze_run(run: Any, **kwargs: Any) -> Any:
    """Crossovers, largest fitting and best-throughput sizes of a saved run."""
    from chipfit.pipelines.sweep import analyze_run as _analyze

    return _analyze(run, **kwargs)


def write_report(runs: Any, path: Any, *, llm: Any = (), **kwargs: Any) -> Any:
    """Write the self-contained HTML report for ``runs``, like ``chipfit report -o PATH``.

    ``llm``: language-model reports (:func:`llm`, at the prompt, batch and dtype wanted) shown
    as sections, like ``chipfit report --llm MODEL --llm-batch N``."""
    from chipfit.report.html import write_report as _write
    from chipfit.report.llm_section import llm_sections

    sections = [*kwargs.pop("sections", ()), *llm_sections(llm)]
    return _write(list(runs) if isinstance(runs, (list, tuple)) else [runs], path,
                  sections=sections, **kwargs)


def catalog(user_catalog: Any = None, price_basis: str | None = None) -> Any:
    """The hardware catalog: key -> HardwareSpec, every figure with its source; like
    ``chipfit catalog [--catalog FILE] [--price-basis BASIS]``. ``.price(key)`` gives a
    device's price (value, provider, date, basis)."""
    from chipfit.hardware.catalog import load_catalog

    return load_catalog(basis=price_basis, user=user_catalog)


def catalog_check(user_catalog: Any = None, stale_days: int = 365) -> list[Any]:
    """Every gap of the catalog, like ``chipfit catalog --check``: CheckItem(severity, key,
    what); an ``error`` is a device without a figure the predictors need."""
    from chipfit.hardware.catalog import check_catalog, load_catalog
    from chipfit.hardware.gpu_arch import gpu_figures

    return check_catalog(load_catalog(user=user_catalog), stale_days,
                         arch_keys=set(gpu_figures()))


def costs(workload: str, size: Any, dtype: str = "float32", mode: str = "inference",
          backend: str = "torch", **kwargs: Any) -> Any:
    """Per-operator FLOPs, bytes and kernels of one call; see chipfit.execute.costs."""
    from chipfit.execute.costs import extract_costs

    return extract_costs(workload, str(size), dtype, mode, backend, **kwargs)


def predict(workload: str, sizes: Any = (), hardware: Any = ("local",), **kwargs: Any) -> Any:
    """Predict on catalog hardware and local devices (local ones measured too)."""
    from chipfit.pipelines.predict import predict_workload

    sizes = [sizes] if isinstance(sizes, (str, int)) else sizes
    return predict_workload(workload, [str(s) for s in sizes], list(hardware), **kwargs)


def feed(model: str, batch: int = 32, workers: Any = None, hardware: Any = None,
         **kwargs: Any) -> Any:
    """How fast this machine's input pipeline (JPEG decode or tokenising, DataLoader workers)
    feeds ``model``, against what each device would consume, like ``chipfit feed``; see
    :func:`chipfit.pipelines.feed.feed`. Returns a ``Feed``: ``.report`` (``verdict``,
    ``best``, ``supplies``, ``findings``) and ``.run`` (every measured point)."""
    from chipfit.pipelines.feed import DEFAULT_HARDWARE
    from chipfit.pipelines.feed import feed as _feed

    hardware = [hardware] if isinstance(hardware, str) else list(
        DEFAULT_HARDWARE if hardware is None else hardware)
    return _feed(model, batch, workers, hardware, **kwargs)


def llm(model: Any, hardware: Any = ("h100-sxm", "l4", "tpu-v5e", "local"),
        **kwargs: Any) -> Any:
    """A language model on each hardware: fits or not, devices needed, time to first token,
    decode tokens/s (like ``chipfit llm``); see :func:`chipfit.pipelines.llm.llm_report`."""
    from chipfit.pipelines.llm import llm_report

    hardware = [hardware] if isinstance(hardware, str) else list(hardware)
    return llm_report(model, hardware, **kwargs)


def serve(model: Any, hardware: Any = ("h100-sxm", "l4", "tpu-v5e"), **kwargs: Any) -> Any:
    """Serving a language model to many users (like ``chipfit llm --rate/--concurrency
    --slo-*``): per hardware the fewest devices (TP x replicas) that meet the SLO, TTFT/TPOT/
    e2e percentiles, tokens/s per device and user, $ and kWh per 1M tokens, and the answer
    line; see :func:`chipfit.pipelines.serving.serve_report`."""
    from chipfit.pipelines.serving import serve_report

    hardware = [hardware] if isinstance(hardware, str) else list(hardware)
    return serve_report(model, hardware, **kwargs)


def calibrate(device: Any = "torch:cpu", *, save: bool = True, **kwargs: Any) -> Any:
    """Measure a local device's achievable rates (stored for predict unless save=False)."""
    from chipfit.pipelines.calibrate import calibrate as _calibrate
    from chipfit.pipelines.calibrate import save_calibration

    cal = _calibrate(device, **kwargs)
    if save:
        save_calibration(cal)
    return cal


def validate(devices: Any = None, **kwargs: Any) -> Any:
    """Predicted vs measured here, and vs published results; the report is kept."""
    from chipfit.pipelines.validate import save_validation
    from chipfit.pipelines.validate import validate as _validate

    result = _validate(devices, **kwargs)
    save_validation(result)
    return result


def run_suite(name: str = "seeds", devices: Any = None, **kwargs: Any) -> Run:
    """Run a named suite, like ``chipfit bench --suite NAME``."""
    from chipfit.pipelines.suites import run_suite as _run

    return _run(name, devices, **kwargs)


def check_claims(run: Run, suite: str = "seeds") -> list[Any]:
    """The seed articles' claims checked against ``run``."""
    from chipfit.analysis.suites import check_claims as _check
    from chipfit.workloads import all_workloads

    return _check(run, suite, {w.name for w in all_workloads()})


def train(model: str, *, samples: Any = None, tokens: Any = None, **kwargs: Any) -> Any:
    """Training and fine-tuning plans on catalog hardware (memory per device, step and total
    time, $ and kWh), like ``chipfit train``; see :func:`chipfit.pipelines.train.train`.
    Returns a ``TrainReport``: ``.verdict``, ``.rows`` (best first), ``.to_dict()``."""
    from chipfit.pipelines.train import train as _train

    return _train(model, samples=samples, tokens=tokens, **kwargs)
