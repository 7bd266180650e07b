"""``chipfit predict`` for any model: a transformers ``config.json`` or a ``module:factory``.

The model is traced once, shape-only (config: built on the meta device, no weights; factory:
the factory's module called on fake tensors), as a CUDA build runs it (fused attention and
recurrent kernels, :mod:`chipfit.workloads.gpu_trace`) and priced by the one predictor
(:mod:`chipfit.predictors`), which chooses each device's route. Nothing is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chipfit.errors import InvalidInputError, UsageError

__all__ = ["DEFAULT_SEQ_LEN", "check_model", "is_model_spec", "predict_model", "trace_model"]

#: Tokens per sequence of a config model when ``--seq-len`` is not given.
DEFAULT_SEQ_LEN = 128


def is_model_spec(text: str) -> bool:
    """A config.json path or a ``module:function`` factory (not a built-in workload name)."""
    return text.endswith(".json") or (":" in text and not text.startswith(("torch:", "jax:")))


def trace_model(spec: str, *, batch: int, seq_len: int, mode: str, dtype: str,
                inputs: Sequence[str] = ()) -> Any:
    """Shape-only per-operator costs of a config.json or factory model, as a GPU runs it."""
    if spec.endswith(".json"):
        from chipfit.workloads.gpu_trace import trace_config

        return trace_config(spec, batch, seq_len, mode=mode, dtype=dtype)
    return _trace_factory(spec, batch, mode, dtype, inputs)


def check_model(spec: str, *, batch: int, seq_len: int, inputs: Sequence[str] = ()) -> None:
    """Everything that can refuse ``spec`` before it is traced, in one line: a config is read
    and checked (every field, and the tensors ``batch`` x ``seq_len`` makes); a factory's
    model loads and runs one batch in a separate process (under a timeout and the memory
    limit: a factory that hangs, eats all memory, exits or returns no tensor stops there)."""
    if spec.endswith(".json"):
        from chipfit.workloads.config_schema import check_trace_size
        from chipfit.workloads.gpu_trace import model_class, read_config

        raw = read_config(spec)
        check_trace_size(raw, batch, seq_len)
        model_class(raw, spec)
        return
    from chipfit.execute.probe import precheck_model, probe_model

    precheck_model(spec)
    probe_model(spec, tuple(inputs))


def _trace_factory(spec: str, batch: int, mode: str, dtype: str, inputs: Sequence[str]) -> Any:
    """Trace the factory's model here (after :func:`check_model` ran it apart); whatever it
    prints goes to stderr."""
    import torch

    from chipfit.workloads.gpu_trace import trace_for_gpu
    from chipfit.workloads.user import first_tensor, load_model, user_output_to_stderr

    model = load_model(spec, inputs=tuple(inputs))
    if not model.inputs:
        raise InvalidInputError(f"{spec}: say the input shape with --input (e.g. 1x3x224x224)")
    module = model.fresh().to(getattr(torch, dtype))
    args = tuple(s.make(batch, seed=i) for i, s in enumerate(model.inputs))
    args = tuple(a.to(getattr(torch, dtype)) if a.is_floating_point() else a for a in args)
    if mode == "inference":
        module.eval()

        def call(*values: Any) -> Any:
            out = module(*values)
            first_tensor(out, model.name)  # a string or None is refused, in one line
            return out

        with torch.inference_mode(), user_output_to_stderr():
            return trace_for_gpu(call, args, workload=model.name, size=str(batch),
                                 dtype=dtype, items=batch, tensors="fake", module=module)
    module.train()

    def step(*values: Any) -> Any:
        first = first_tensor(module(*values), model.name)
        first.float().mean().backward()
        return first

    with user_output_to_stderr():
        return trace_for_gpu(step, args, workload=model.name, size=str(batch), dtype=dtype,
                             mode="train-fwd-bwd", items=batch, tensors="fake", module=module)


def predict_model(spec: str, hardware: Sequence[str], *, batch: int = 1,
                  seq_len: int | None = None, mode: str = "inference", dtype: str = "float32",
                  inputs: Sequence[str] = (), stack: str = "eager", host_speed: float = 1.0,
                  progress: Callable[[str], None] | None = None) -> list[Any]:
    """Predict ``spec`` (config.json or factory) on catalog hardware; rows as ``predict``'s.

    ``host_speed``: the host CPU queueing eager PyTorch on an accelerator, relative to the
    kernel data's median host (:func:`chipfit.predictors.check_host_speed`).

    ``seq_len`` is a config's tokens per sequence (None: :data:`DEFAULT_SEQ_LEN`).
    ``stack`` other than eager predicts a fused engine at precision ``dtype`` on top of the
    float32 eager prediction (:mod:`chipfit.analysis.stacks`); a token model's engine row is
    priced at the ``seq_len`` given as real tokens, or, with none given, at the fitted
    real-token share of the default window (:func:`chipfit.predictors.engine.token_window`).
    """
    given_seq_len = seq_len
    seq_len = DEFAULT_SEQ_LEN if seq_len is None else seq_len
    from chipfit.analysis.roofline import fit_checked
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.predict import PredictRow, Target

    if mode not in ("inference", "train"):
        raise InvalidInputError(f"mode must be inference or train, not {mode!r}")
    from chipfit.predictors import check_host_speed
    from chipfit.predictors.engine import engine_precision, resolve_stack
    from chipfit.workloads.config_schema import MAX_BATCH, MAX_TOKENS, check_run_size

    host_speed = check_host_speed(host_speed)
    check_run_size("--batch", batch, MAX_BATCH)  # before anything is loaded or traced
    check_run_size("--seq-len", seq_len, MAX_TOKENS)

    stack = resolve_stack(stack)
    precision = engine_precision(dtype) if stack != "eager" else ""
    if stack != "eager":
        if mode != "inference":
            raise InvalidInputError(f"the {stack} stack runs inference only (got mode {mode!r})")
        dtype = "float32"
    local = [h for h in hardware if h == "local" or h.startswith(("torch:", "jax:"))]
    if local:
        raise UsageError(f"{spec}: only catalog hardware can be predicted from a config or "
                         "factory here (measure local devices with chipfit advise)")
    catalog = load_catalog()
    for key in hardware:
        catalog[key]  # raises UnknownNameError with a did-you-mean
    check_model(spec, batch=batch, seq_len=seq_len, inputs=inputs)
    if progress:
        progress(f"tracing {spec} (batch {batch}, {mode}, shape only)")
    costs = trace_model(spec, batch=batch, seq_len=seq_len, mode=mode, dtype=dtype,
                        inputs=inputs)
    from chipfit.predictors import predict_catalog

    rows = []
    for key in hardware:
        pred = fit_checked(predict_catalog(costs, key, host_speed=host_speed), costs.memory_bytes,
                           catalog[key].memory_bytes)
        rows.append(PredictRow(Target(key, False, catalog[key].kind, catalog[key].name), pred))
    if stack == "eager":
        return rows
    from chipfit.pipelines.predict import _engine_row
    from chipfit.predictors.engine import NOT_TOKENS, token_window

    if not spec.endswith(".json"):
        tokens = None  # a factory: chipfit cannot tell its tensors' padding
    elif not _takes_tokens(spec):
        tokens = NOT_TOKENS  # an image model: no token rule, whatever --seq-len says
    else:
        tokens = token_window(seq_len=given_seq_len, default_seq_len=DEFAULT_SEQ_LEN,
                              flag="--seq-len")
    return [_engine_row(r, stack, precision, costs, tokens) for r in rows]


def _takes_tokens(spec: str) -> bool:
    """Whether the transformers config ``spec`` describes a model that reads token ids (not
    an image model's pixels)."""
    from chipfit.workloads.gpu_trace import read_config, takes_tokens

    return takes_tokens(read_config(spec))
