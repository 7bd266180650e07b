"""Helpers shared by the subcommands: consoles, progress bars, saving results."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from chipfit.report.fmt import UNSAFE, clean
from chipfit.report.layout import MIN_WIDTH, too_wide, vertical
from chipfit.results import Measurement, Run
from chipfit.spec import Job
from chipfit.store.runs import run_file, save_run, write_csv


class SafeConsole(Console):
    """Rich's console with three guarantees for everything the commands print, whichever view
    built it:

    - text from a file never acts on the terminal: every :data:`~chipfit.report.fmt.UNSAFE`
      character (ESC, C1 controls, bidirectional overrides ...) in a string, a Text or any
      segment a renderable yields is shown as a visible escape (``\\x1b[8m``);
    - a table that cannot fit the width without cutting a key or a number is shown
      :func:`~chipfit.report.layout.vertical` (one record per row) instead;
    - the width is never below :data:`~chipfit.report.layout.MIN_WIDTH` (``COLUMNS=20``).

    Markup and emoji codes are off as well (see below).
    """

    @property  # type: ignore[override]
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        return ConsoleDimensions(max(dims.width, MIN_WIDTH), dims.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def render_str(self, text: str, **kwargs: Any) -> Text:  # type: ignore[override]
        return super().render_str(clean(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterator[Segment]:  # type: ignore[override]
        if isinstance(renderable, Text):
            renderable = _safe(renderable)
        elif isinstance(renderable, Table):
            _clean_table(renderable)  # before measuring: an escape is wider than what it shows
            if too_wide(self, options or self.options, renderable):
                renderable = vertical(renderable)
        for segment in super().render(renderable, options):
            if not segment.control and UNSAFE.search(segment.text):
                segment = Segment(clean(segment.text), segment.style, segment.control)
            yield segment


def _safe(cell: Any) -> Any:
    """``cell`` (a string or a Text; anything else as it is) with unsafe characters escaped."""
    if isinstance(cell, str) and UNSAFE.search(cell):
        return clean(cell)
    if isinstance(cell, Text) and UNSAFE.search(cell.plain):
        return _clean_text(cell)
    return cell


def _clean_table(table: Table) -> None:
    """Escape the unsafe characters of ``table``'s title, caption, headers and cells in place."""
    table.title, table.caption = _safe(table.title), _safe(table.caption)
    for column in table.columns:
        column.header, column.footer = _safe(column.header), _safe(column.footer)
        column._cells = [_safe(cell) for cell in column._cells]


def _clean_text(text: Text) -> Text:
    """A copy of ``text`` with its unsafe characters escaped, styles kept around them."""
    safe = text.blank_copy()
    last = 0
    for match in UNSAFE.finditer(text.plain):
        safe.append_text(text[last:match.start()])
        safe.append(clean(match.group()))
        last = match.end()
    safe.append_text(text[last:])
    return safe


# Markup and emoji codes are off: names, notes and paths come from users and stored files,
# and a "[/]" or "[red]" in them must print as written, not style the line or crash it.
# Styles are given as Text objects or style= arguments instead.
out = SafeConsole(highlight=False, soft_wrap=False, markup=False, emoji=False)
err = SafeConsole(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


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


#: Every flag that takes a comma-separated list, by argparse dest. :func:`check_list_flags`
#: reads them all once, before a command starts, so no command can get an empty list or the
#: same name twice.
LIST_FLAGS = {"hardware": "--hardware", "devices": "--devices", "dtypes": "--dtypes",
              "sizes": "--sizes", "workloads": "--workloads", "stacks": "--stacks",
              "modes": "--modes", "batches": "--batches", "llm_hardware": "--llm-hardware",
              "workers": "--workers", "labels": "--labels"}
#: Repeatable flags (one value per use): none may be empty. Repeats are kept (two inputs of
#: one shape are two inputs).
REPEATED_FLAGS = {"input": "--input", "llm": "--llm", "noise": "--noise",
                  "node_price": "--node-price"}
#: Flags whose items may be device ids (``torch:cpu@4t``), checked as such.
DEVICE_FLAGS = ("hardware", "devices")
#: The most items one list flag takes: far more than any real plan, and a bound on the work.
MAX_LIST_ITEMS = 256


def parse_list(text: str, flag: str, *, devices: bool = False, cpus: int | None = None,
               case: bool = False) -> list[str]:
    """The items of one list flag: stripped, blanks dropped, repeats dropped (the first kept,
    case-insensitively unless ``case``). An empty list is refused. With ``devices``, items that
    are device ids (they have a ``:``) must parse and come back canonical, and a CPU pinned to
    more threads than ``cpus`` is refused. One-line errors (InvalidInputError) only."""
    from chipfit.errors import InvalidInputError
    from chipfit.spec import DeviceRef

    items = [part.strip() for part in str(text).split(",")]
    items = [part for part in items if part]
    if not items:
        raise InvalidInputError(f"{flag} is empty: give one or more comma-separated values")
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidInputError(f"{flag} lists {len(items)} values; at most {MAX_LIST_ITEMS}")
    kept: dict[str, str] = {}
    for item in items:
        if devices and ":" in item:
            ref = DeviceRef.parse(item)
            if cpus is not None and ref.threads is not None and ref.threads > cpus:
                raise InvalidInputError(f"{flag}: {item!r} pins {ref.threads} threads but this "
                                        f"machine has {cpus} CPU(s)")
            item = str(ref)
        kept.setdefault(item if case else item.lower(), item)
    return list(kept.values())


def check_list_flags(args: argparse.Namespace) -> None:
    """Read every list flag the command has (:data:`LIST_FLAGS`, :data:`REPEATED_FLAGS`) with
    :func:`parse_list`, and store it back joined, so every command sees each name once and
    never an empty list. Thread pins are bounded by this machine's CPUs unless jobs run
    elsewhere (a Ray cluster)."""
    import os

    from chipfit.errors import InvalidInputError

    remote = bool(getattr(args, "ray_address", None)) or getattr(args, "executor", None) == "ray"
    cpus = None if remote else (os.cpu_count() or 1)
    for attr, flag in LIST_FLAGS.items():
        value = getattr(args, attr, None)
        if isinstance(value, str):
            setattr(args, attr, ",".join(parse_list(value, flag, devices=attr in DEVICE_FLAGS,
                                                    cpus=cpus, case=attr == "labels")))
    for attr, flag in REPEATED_FLAGS.items():
        values = getattr(args, attr, None)
        if isinstance(values, list):
            if any(not str(v).strip() for v in values):
                raise InvalidInputError(f"{flag} is empty: give a value each time it is used")
            if len(values) > MAX_LIST_ITEMS:
                raise InvalidInputError(f"{flag} is given {len(values)} times; at most "
                                        f"{MAX_LIST_ITEMS}")
            if attr == "input":  # a malformed shape is refused before anything loads
                from chipfit.workloads.user import parse_input

                for value in values:
                    parse_input(value)


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


def add_catalog_flags(parser: argparse.ArgumentParser) -> None:
    """--catalog FILE and --price-basis: which catalog and which price rank cost."""
    parser.add_argument("--catalog", dest="catalog_file", metavar="FILE",
                        help="your catalog (TOML, the shipped schema): adds devices, overrides "
                        "prices; catalog.toml in chipfit's data directory is read too")
    parser.add_argument("--price-basis", metavar="BASIS",
                        help="which on-demand price ranks cost: median (default) of the "
                        "providers, cheapest, or one provider (aws, gcp, lambda, runpod ...)")


def _host_speed(text: str) -> float:
    from chipfit.errors import InvalidInputError
    from chipfit.predictors import check_host_speed

    try:
        return check_host_speed(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_host_speed_flag(parser: argparse.ArgumentParser) -> None:
    """--host-speed: the host CPU that queues eager PyTorch on a catalog accelerator."""
    parser.add_argument("--host-speed", type=_host_speed, default=1.0, metavar="X",
                        help="your host CPU's eager PyTorch dispatch speed relative to the "
                        "GPU kernel data's median server host (default 1; 2 = twice as fast, "
                        "for example a current desktop CPU): it sets batch-1 eager times on "
                        "accelerators, where the host, not the device, is the limit")


def apply_catalog_flags(args: argparse.Namespace) -> None:
    """Make --catalog / --price-basis (or their absence) the catalog every layer loads, and
    read it now, so a bad file or basis is one line before any work."""
    from chipfit.hardware.catalog import configure, load_catalog

    configure(getattr(args, "catalog_file", None), getattr(args, "price_basis", None))
    if getattr(args, "catalog_file", None) or getattr(args, "price_basis", None):
        load_catalog()


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
        warn(line)


def warn(text: str, prefix: str = "warning: ") -> None:
    """A warning (or note) on stderr, wrapped at the terminal's width at spaces (a word
    longer than a line is folded), continuation lines indented two spaces: a pipe's 80
    columns get a short paragraph, not one 276-character line. Stored text stays text."""
    import textwrap

    # escaped first (an escape is wider than what it stands for), then wrapped
    lines = textwrap.wrap(clean(prefix + text), width=max(err.width, MIN_WIDTH),
                          subsequent_indent="  ", break_on_hyphens=False)
    err.print(Text("\n".join(lines)), soft_wrap=True)


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


def show(renderable: Any, wide: bool | None = False) -> None:
    """Print ``renderable`` on stdout. ``wide`` (``--wide``) prints it at its full width even
    where the terminal is narrower, so nothing wraps; ``None`` does so only where stdout has
    no width of its own (a pipe or a file without ``$COLUMNS``), and elsewhere keeps to the
    width (a table that cannot fit is shown as records, :class:`SafeConsole`)."""
    import os

    if wide is None:
        wide = not out.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit()
    if not wide:
        out.print(renderable)
        return
    from rich.measure import Measurement

    need = Measurement.get(out, out.options.update_width(100_000), renderable).maximum
    saved = out._width
    out.width = max(out.width, need)
    try:
        out.print(renderable)
    finally:
        out._width = saved


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
        warn(busy)
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
                   "ray://host:10001, or 'auto'; default with --executor ray: $RAY_ADDRESS), each "
                   "job pinned to its node, and say which node type to use")
    p.add_argument("--every-node", action="store_true",
                   help="fleet: measure on every node, not once per node type")
    p.add_argument("--node-price", action="append", default=[], metavar="TYPE=USD/h",
                   help="fleet: hourly price of a node type (repeat; default: the catalog's "
                   "price of its accelerators; CPU-only types have none)")


def ray_address(args: argparse.Namespace) -> str | None:
    """The fleet's Ray address: --ray-address, else $RAY_ADDRESS when ``--executor ray`` is
    given without --address. A plain command never reads $RAY_ADDRESS: a stray one in the
    environment must not send a local run to a cluster (or hang on one that is gone)."""
    import os

    given = getattr(args, "ray_address", None)
    if given:
        return given
    if getattr(args, "executor", None) == "ray" and not getattr(args, "address", None):
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
