"""Helpers shared by the subcommands: consoles, progress bars, saving results."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipfit.results import Measurement, Run
from chipfit.spec import Job
from chipfit.store.runs import run_file, save_run, write_csv

# Markup and emoji codes are off: names, notes and paths come from users and stored files,
# and a "[/]" or "[red]" in them must print as written, not style the line or crash it.
# Styles are given as Text objects or style= arguments instead.
out = Console(highlight=False, soft_wrap=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` would slip past every range check
    and make timing loops and timeouts never end)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--csv", metavar="PATH", help="write one row per measurement to PATH")
    parser.add_argument("--no-save", action="store_true",
                        help="do not keep the run under the chipfit data directory")


#: Flags naming a file chipfit writes, and how the path is checked before any work starts.
_OUTPUT_FLAGS = (("json", "--json"), ("csv", "--csv"), ("html", "--html"), ("output", "--output"))


def check_output_flags(args: argparse.Namespace) -> None:
    """Refuse every unusable output path (a directory, a device, a link, a parent that is a
    file, no permission) before anything is measured, so a run never dies at its end."""
    from chipfit.paths import check_output, check_output_dir

    for attr, flag in _OUTPUT_FLAGS:
        value = getattr(args, attr, None)
        if isinstance(value, str) and value != "-":
            check_output(value, flag)
    if isinstance(getattr(args, "png", None), str):
        check_output_dir(args.png, "--png")
    if isinstance(getattr(args, "db", None), str):
        from chipfit.store.sqlite import check_db_path

        check_db_path(args.db)


def add_db_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH", help="the results database (default: "
                        "chipfit.sqlite3 under the chipfit data directory)")


def open_db(args: argparse.Namespace, create: bool = False) -> Any:
    """The store named by ``--db`` (or the default); ``create`` for commands that write."""
    from chipfit.store import open_store

    return open_store(args.db, create=create, takeover=bool(getattr(args, "takeover", False)))


@contextlib.contextmanager
def measuring(args: argparse.Namespace, name: str) -> Iterator[tuple[Saver, Any, Any]]:
    """What a measuring command needs: a Saver with a progress bar, the executor that
    ``--executor`` names, and the results store (None with ``--no-save`` and no ``--db``).
    The store is closed on the way out, whatever happens."""
    executor = executor_from_args(args)
    store = None if args.no_save and not args.db else open_db(args, create=True)
    with progress() as bar, executor:
        task = bar.add_task(name, total=None, current="")
        try:
            check_node_prices(args, executor)
            yield Saver(args, bar, task), executor, store
        finally:
            if store is not None:
                store.close()


def load_run_ref(args: argparse.Namespace, ref: str) -> Run:
    """A run named on the command line: a results JSON file, or a run in the database."""
    # whatever exists under a .json name is read as a file (the reader refuses a FIFO, a
    # device or a directory in one line), not looked up as a run id
    if ref.endswith(".json") and (Path(ref).exists() or Path(ref).is_symlink()):
        from chipfit.store.runs import load_run

        return load_run(ref)
    with open_db(args) as store:
        run = store.load_run(ref)
        warn_skipped(store)
        return run


def warn_skipped(store: Any) -> None:
    """One line on stderr per damaged database row that reading skipped."""
    for line in store.skipped:
        err.print(f"warning: {line}")


def note(text: str) -> None:
    """A progress line on stderr, flushed at once (stderr may be a pipe read live)."""
    err.print(text, soft_wrap=True)
    err.file.flush()


def progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[current]}", markup=False), console=err,
                    transient=True, disable=not err.is_terminal)


class Saver:
    """Writes the run after every measurement, so nothing measured is lost on a crash."""

    def __init__(self, args: argparse.Namespace, progress_bar: Progress | None = None,
                 task: Any = None) -> None:
        self.paths = [] if args.no_save else [None]
        if args.json:
            self.paths.append(Path(args.json))
        self.csv = args.csv
        self.bar, self.task = progress_bar, task
        self.written: list[Path] = []

    def __call__(self, i: int, n: int, job: Job, m: Measurement, run: Run) -> None:
        self.save(run)
        if self.bar is not None and not self.bar.disable:
            self.bar.update(self.task, completed=i, total=n,
                            current=f"{m.workload} {m.size} {m.device} {m.status}")
        elif not err.is_terminal:
            # No terminal for a bar (a pipe, a log file, CI): one line per measurement, so a
            # long run never looks hung.
            note(f"[{i}/{n}] {m.workload} {m.size} {m.device} {m.dtype} {m.mode}: {m.status}")

    def save(self, run: Run) -> None:
        self.written = [save_run(run, p or run_file(run.run_id)) for p in self.paths]

    def finish(self, run: Run) -> None:
        self.save(run)
        if self.csv:
            self.written.append(write_csv([run], self.csv))
        for path in self.written:
            err.print(f"wrote {path}")


def show(renderable: Any, wide: bool = False) -> None:
    """Print ``renderable`` on stdout; ``wide`` prints it at its full width even where the
    terminal (or a pipe's 80 columns) is narrower, so nothing wraps."""
    if not wide:
        out.print(renderable)
        return
    from rich.measure import Measurement

    need = Measurement.get(out, out.options.update_width(100_000), renderable).maximum
    saved = out.width
    out.width = max(saved, need)
    try:
        out.print(renderable)
    finally:
        out.width = saved


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")


def check_node_prices(args: argparse.Namespace, executor: Any) -> None:
    """Refuse a --node-price for a node type the fleet lacks, before anything is measured."""
    from chipfit.errors import InvalidInputError
    from chipfit.pipelines.fleet import parse_node_prices

    given = parse_node_prices(getattr(args, "node_price", None) or [])
    if not given or not getattr(executor, "fleet", False):
        return
    # the probe the command makes next anyway (cached by backends): probing every framework
    # here instead would import TensorFlow and JAX on every node for a torch-only run
    from chipfit.discovery import backends_named

    devices = getattr(args, "devices", None)
    executor.discover(backends_named(csv_list(devices) if devices else None))
    known = {n.node_type for n in executor.nodes()}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidInputError(f"--node-price names no node type of this fleet: "
                                f"{', '.join(unknown)} (types: {', '.join(sorted(known))})")


def with_fleet(render: Callable[[Run], Any], args: argparse.Namespace) -> Callable[[Run], Any]:
    """``render`` for a run without node types; the fleet section for a fleet run."""
    from chipfit.pipelines.fleet import fleet_report, parse_node_prices

    prices = parse_node_prices(getattr(args, "node_price", None) or [])

    def view(run: Run) -> Any:
        report = fleet_report(run, prices)
        if report is None:
            return render(run)
        from chipfit.report.fleet_view import fleet_renderable

        return fleet_renderable(report.rows, report.choices)

    return view


def warn_if_busy(measurements: Sequence[Measurement] = ()) -> bool:
    """The one busy-machine warning (:func:`chipfit.analysis.trust.warning`) of every command
    that measures: from the points' evidence and the load now. True if it was printed."""
    from chipfit.analysis.trust import warning
    from chipfit.timing.contention import machine_load

    busy = warning(measurements, machine_load())
    if busy:
        err.print(f"warning: {busy}", markup=False, soft_wrap=True)
    return bool(busy)


def finish_run(run: Run, saver: Saver, render: Callable[[Run], Any]) -> int:
    """Save, print the table, and pick the exit code (130 when interrupted)."""
    saver.finish(run)
    if run.measurements:
        out.print(render(run))
    warn_if_busy(run.measurements)
    if run.interrupted:
        err.print(f"interrupted: kept {len(run.measurements)} measurement(s)")
        return 130
    return 0


def add_stacks_flag(p: argparse.ArgumentParser) -> None:
    """``--stacks``: the software stacks to measure (chipfit.workloads.stacks)."""
    p.add_argument("--stacks", default="eager",
                   help="comma-separated software stacks: eager (default), compile "
                        "(torch.compile), onnxruntime, int8 (onnxruntime dynamic int8), "
                        "int8-torch, int8-static (calibrated on random inputs), or all; JAX "
                        "devices run jit")


def add_fleet_flags(p: argparse.ArgumentParser) -> None:
    """Where results are kept, and where jobs run: --db, --resume, --executor and friends."""
    add_db_flag(p)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue the newest unfinished run with the same settings (or run RUN): "
                   "only jobs without a stored measurement run again")
    p.add_argument("--takeover", action="store_true",
                   help="with --resume: continue the run even though the process recorded as "
                   "measuring it still looks alive (its PID reused after a crash)")
    p.add_argument("--executor", choices=("inline", "subprocess", "ray"), default=None,
                   help="where jobs run: this process (default), a fresh process per device "
                   "with a per-job timeout, or a Ray cluster")
    add_ray_fleet_flags(p)
    p.add_argument("--address", help="Ray cluster address for --executor ray (default: start "
                   "a local Ray instance; 'auto' joins the running one)")
    p.add_argument("--job-timeout", type=finite_float, metavar="SECONDS",
                   help="subprocess/ray: record a job as timed out after this long (default 300)")
    p.add_argument("--labels", help="ray: only nodes with these labels, e.g. "
                   "ray.io/accelerator-type=H100 (comma-separated key=value)")


def add_ray_fleet_flags(p: argparse.ArgumentParser) -> None:
    """--ray-address and friends: measure on every node type of a Ray cluster."""
    p.add_argument("--ray-address", metavar="ADDRESS", help="a fleet: measure the plan once per "
                   "node type of the Ray cluster at ADDRESS (host:port of a `ray start --head`, "
                   "ray://host:10001, or 'auto'; default: $RAY_ADDRESS when --executor is not "
                   "given), each job pinned to its node, and say which node type to use")
    p.add_argument("--every-node", action="store_true",
                   help="fleet: measure on every node, not once per node type")
    p.add_argument("--node-price", action="append", default=[], metavar="TYPE=USD/h",
                   help="fleet: hourly price of a node type (repeat; default: the catalog's "
                   "price of its accelerators; CPU-only types have none)")


def ray_address(args: argparse.Namespace) -> str | None:
    """The fleet's Ray address: --ray-address, else $RAY_ADDRESS when no executor was named."""
    import os

    given = getattr(args, "ray_address", None)
    if given:
        return given
    if getattr(args, "executor", None) is None and not getattr(args, "address", None):
        return os.environ.get("RAY_ADDRESS") or None
    return None


def executor_from_args(args: argparse.Namespace):
    from chipfit.errors import InvalidInputError
    from chipfit.execute import get_executor

    fleet = ray_address(args)
    if fleet:
        if args.executor not in (None, "ray") or args.address:
            raise InvalidInputError("--ray-address runs a fleet on Ray: drop --executor "
                                    f"{args.executor or ''} / --address")
        return get_executor("ray", address=fleet, labels=_labels(args.labels),
                            timeout_s=args.job_timeout, fleet=True, every_node=args.every_node)
    if args.every_node or args.node_price:
        raise InvalidInputError("--every-node and --node-price need --ray-address (a fleet)")
    args.executor = args.executor or "inline"
    if args.executor != "ray" and (args.address or args.labels):
        raise InvalidInputError("--address and --labels need --executor ray")
    if args.executor == "inline":
        if args.job_timeout is not None:
            raise InvalidInputError("--job-timeout needs --executor subprocess or ray (inline "
                                    "jobs cannot be stopped from outside)")
        return get_executor("inline")
    if args.executor == "subprocess":
        return get_executor("subprocess", timeout_s=args.job_timeout)
    return get_executor("ray", address=args.address, labels=_labels(args.labels),
                        timeout_s=args.job_timeout)


def _labels(text: str | None) -> dict[str, str] | None:
    """``key=value,key=value`` as a Ray label selector."""
    from chipfit.errors import InvalidInputError

    labels = {}
    for pair in csv_list(text or ""):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise InvalidInputError(f"malformed label {pair!r}: use key=value")
        labels[key.strip()] = value.strip()
    return labels or None


def timing_from_args(args: argparse.Namespace):
    """``--quick``, ``--target`` (where the command has it) and ``--budget`` as a TimingConfig."""
    from dataclasses import replace

    from chipfit.errors import InvalidInputError
    from chipfit.spec import TimingConfig

    timing = TimingConfig.quick() if args.quick else TimingConfig()
    if getattr(args, "target", None) is not None:
        timing = replace(timing, target_rel_ci=args.target)
    if args.budget is not None:
        if args.budget <= 0:
            raise InvalidInputError("--budget must be positive")
        timing = replace(timing, budget_s=args.budget)
    return timing
