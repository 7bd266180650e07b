"""Isolation for user code: a model file or factory loads and runs one batch in a fresh
process first, with a timeout and a cap on its memory, before chipfit runs it in-process.

A factory that never returns, or a forward that allocates without bound, then costs one
killed child process instead of a hung or swapping chipfit; the child's errors come back as
chipfit's own, one line each.

The child comes from a fork server that imported torch once (``forkserver``, where the platform
has one; ``spawn`` elsewhere): each probe after the first starts in milliseconds instead of
paying for a Python start and torch's import (about 1.5 s). It is still a fresh process per
model: the server never runs user code, and each child gets the caller's working directory,
``sys.path`` and environment, as a spawned one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chipfit.errors import InvalidInputError, OutOfMemoryError
from chipfit.execute.job import MEMORY_HEADROOM, MEMORY_LIMIT_ENV
from chipfit.paths import check_user_file
from chipfit.workloads.user import (
    MODEL_SUFFIXES,
    _one_line,
    _zip_names,
    check_inputs,
    is_allocation_failure,
    load_model,
)

__all__ = ["DEFAULT_LOAD_TIMEOUT_S", "host_memory_limit", "precheck_model", "probe_model"]


def host_memory_limit() -> int | None:
    """Bytes user code may use on this host: ``$CHIPFIT_MEMORY_LIMIT_BYTES`` if set, else
    90% of physical memory (the memory guard's rule for a device, applied to the host)."""
    import os

    from chipfit.workloads.base import parse_count

    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if text:
        return parse_count(text, MEMORY_LIMIT_ENV)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_HEADROOM)
    except (ValueError, OSError, AttributeError):  # not POSIX: no limit known
        return None


#: Seconds a model may take to load and run one batch in the probe (``--job-timeout``).
DEFAULT_LOAD_TIMEOUT_S = 300.0
#: Starting the probe's Python and importing torch, before the user's clock starts.
_PROBE_START_S = 180.0


def precheck_model(spec: str, *, weights: str | None = None, trust_pickle: bool = False) -> None:
    """The checks that need no user code: files exist and are regular, a factory spec is
    well formed, and (unless trusted) a model file holds no pickle that would run code.
    Cheap enough to run before starting any process."""
    from chipfit.workloads.pickles import check_model_file

    path = Path(spec)
    if path.suffix in MODEL_SUFFIXES or path.exists():
        check_user_file(path, "model file")  # a FIFO, a device, a directory: said what it is
        if weights:
            raise InvalidInputError("--weights goes with --factory, not with a model file")
        if not trust_pickle:
            names = _zip_names(path)
            check_model_file(path, torchscript=any("/code/" in n for n in names) and not any(
                n.endswith(("models/model.json", "archive_format")) for n in names))
        return
    target, _, func = spec.rpartition(":")
    if not target or not func.isidentifier():
        return  # load_model says what is wrong with it
    if target.endswith(".py"):
        check_user_file(target, "factory file")
    if weights:
        check_user_file(weights, "weights file")


def probe_model(spec: str, inputs: tuple[str, ...] = (), *, weights: str | None = None,
                trust_pickle: bool = False, name: str | None = None,
                timeout_s: float = DEFAULT_LOAD_TIMEOUT_S) -> None:
    """Load ``spec`` and run one batch in a fresh process, within ``timeout_s`` seconds and
    the host's memory limit (:func:`host_memory_limit`, as an address-space cap on top of
    what importing torch took). Raises what loading raises there; a hang becomes an
    InvalidInputError, running out of memory or dying an OutOfMemoryError.

    A factory that never returns, or a forward that allocates without bound, then costs one
    killed child process instead of a hung or swapping chipfit.
    """
    import os
    import time

    if timeout_s <= 0:
        raise InvalidInputError("--job-timeout must be positive (seconds)")
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe_child, name="chipfit-model-probe", daemon=True,
                       args=(send, spec, tuple(inputs), weights, trust_pickle, name,
                             host_memory_limit(), dict(os.environ), os.getpid()))
    proc.start()
    send.close()
    try:
        for phase, limit in (("starting", _PROBE_START_S), ("loading", timeout_s)):
            deadline = time.monotonic() + limit
            while not receive.poll(0.2):
                if not proc.is_alive() and not receive.poll(0.2):
                    raise _probe_died(spec, _exit_code(proc))
                if time.monotonic() > deadline:
                    raise InvalidInputError(
                        f"{spec} did not load and run one batch within {limit:g} s while "
                        f"{phase} (a factory or forward that never returns?); the process was "
                        "stopped; raise --job-timeout if the model is just slow")
            try:
                kind, payload = receive.recv()
            except (EOFError, OSError):  # the child closed its end: it is exiting
                raise _probe_died(spec, _exit_code(proc)) from None
            if kind == "error":
                raise _rebuilt(*payload)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        receive.close()


def _context() -> Any:
    """Where children start: a fork server with torch imported (Linux, macOS), else spawn.

    The server itself starts once per chipfit process, at the first probe; it holds no
    thread pool (torch's starts at the first parallel op, which the server never runs), so
    forking it is safe.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", __name__])  # read when the server starts
    return ctx


def _exit_code(proc: Any) -> int | None:
    """The child's exit code, once it has one (its end of the pipe closes a moment before the
    fork server reports how it ended)."""
    proc.join(5)
    return proc.exitcode


def _probe_died(spec: str, code: int | None) -> Exception:
    """Why the probe's child ended without an answer. Killed (SIGKILL: the kernel's
    out-of-memory killer) or aborted (SIGABRT: an allocation failing under the address-space
    cap where nothing catches it) is memory; an exit with a code of its own is the model's
    code calling ``sys.exit``/``os._exit`` (or a library doing so), and a crash by another
    signal is a crash: neither is blamed on memory."""
    import signal

    from chipfit.execute._worker import exit_note

    if code is not None and code >= 0:
        return InvalidInputError(f"{spec}: the process loading the model exited with code "
                                 f"{code} before answering (does the factory, the model's "
                                 "module or its forward call sys.exit or os._exit?)")
    if code is not None and code not in (-signal.SIGKILL, -signal.SIGABRT):
        return InvalidInputError(f"{spec}: the process loading the model crashed "
                                 f"({exit_note(code)}) before answering")
    return OutOfMemoryError(f"{spec}: the process loading the model died ({exit_note(code)}); "
                            "most likely it does not fit in this machine's memory")


def _rebuilt(kind: str, message: str) -> Exception:
    """The child's chipfit error, raised again here with its own class."""
    from chipfit import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.ChipfitError) and kind != "UnknownNameError":
        return cls(message)
    return InvalidInputError(message)


def _probe_child(conn: Any, spec: str, inputs: tuple[str, ...], weights: str | None,
                 trust_pickle: bool, name: str | None, limit: int | None,
                 environ: dict[str, str], caller: int) -> None:
    """The probe's body: cap the address space, load, run one batch, report."""
    import os

    os.environ.clear()  # the caller's environment now, not the fork server's at its start
    os.environ.update(environ)
    _end_with(caller)
    _stdout_to_stderr()
    try:
        import torch  # noqa: F401 - imported before the cap and before "ready"

        _cap_address_space(limit)
        conn.send(("ready", None))
        model = load_model(spec, inputs=inputs, weights=weights, trust_pickle=trust_pickle,
                           name=name)
        check_inputs(model, memory_limit=limit)
        conn.send(("ok", None))
    except KeyboardInterrupt:
        return
    except Exception as exc:  # noqa: BLE001 - everything goes back as one message
        from chipfit.errors import ChipfitError

        if isinstance(exc, ChipfitError):
            conn.send(("error", (type(exc).__name__, str(exc))))
        elif is_allocation_failure(exc):
            conn.send(("error", ("OutOfMemoryError", f"{spec} does not fit in this machine's "
                                 f"memory ({_one_line(exc)})")))
        else:
            conn.send(("error", ("InvalidInputError", f"{spec} failed to load ({_one_line(exc)})")))


def _stdout_to_stderr() -> None:
    """Everything this child prints goes to stderr: the model's code runs here, and chipfit's
    stdout (``--json``) is the caller's alone. File descriptor 1 too (TorchScript prints from
    C++), not only ``sys.stdout``."""
    import os
    import sys

    sys.stdout = sys.stderr
    try:
        os.dup2(2, 1)
    except OSError:
        pass


def _end_with(caller: int) -> None:
    """Exit when the chipfit process that asked for this probe is gone (``kill -9``): a hung
    factory would otherwise outlive it, and keep the fork server alive with it."""
    import os
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(caller, 0)
            except ProcessLookupError:
                os._exit(1)
            except OSError:
                pass  # alive, someone else's to signal

    threading.Thread(target=watch, name="chipfit-probe-watch", daemon=True).start()


def _cap_address_space(limit: int | None) -> None:
    """Allow ``limit`` bytes of address space beyond what the process holds now (Linux)."""
    if limit is None:
        return
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as fh:
            vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + limit, resource.RLIM_INFINITY))
    except (ImportError, OSError, ValueError, StopIteration):
        pass  # no cap where the platform has none; the timeout still holds
