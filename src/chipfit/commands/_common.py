"""Helpers shared by the subcommands: consoles, progress bars, saving results."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipfit.paths import runs_dir
from chipfit.store.runs import run_to_dict, save_run, write_csv
from chipfit.results import Measurement, Run
from chipfit.spec import Job

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--csv", metavar="PATH", help="write one row per measurement to PATH")
    parser.add_argument("--no-save", action="store_true",
                        help="do not keep the run under the chipfit data directory")


def add_db_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH", help="the results database (default: "
                        "chipfit.sqlite3 under the chipfit data directory)")


def open_db(args: argparse.Namespace, create: bool = False) -> Any:
    """The store named by ``--db`` (or the default); ``create`` for commands that write."""
    from chipfit.store import open_store

    return open_store(args.db, create=create)


@contextlib.contextmanager
def measuring(args: argparse.Namespace, name: str) -> Iterator[tuple[Saver, Any, Any]]:
    """What a measuring command needs: a Saver with a progress bar, the executor that
    ``--executor`` names, and the results store (None with ``--no-save`` and no ``--db``).
    The store is closed on the way out, whatever happens."""
    from chipfit.commands.bench import executor_from_args

    executor = executor_from_args(args)
    store = None if args.no_save and not args.db else open_db(args, create=True)
    with progress() as bar, executor:
        task = bar.add_task(name, total=None, current="")
        try:
            yield Saver(args, bar, task), executor, store
        finally:
            if store is not None:
                store.close()


def load_run_ref(args: argparse.Namespace, ref: str) -> Run:
    """A run named on the command line: a results JSON file, or a run in the database."""
    if ref.endswith(".json") and Path(ref).is_file():
        from chipfit.store.runs import load_run

        return load_run(ref)
    with open_db(args) as store:
        return store.load_run(ref)


def progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[current]}"), console=err,
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
        if self.bar is not None:
            self.bar.update(self.task, completed=i, total=n,
                            current=f"{m.workload} {m.size} {m.device} {m.status}")
        elif not err.is_terminal:
            err.print(f"[{i}/{n}] {m.workload} {m.size} {m.device} {m.dtype}: {m.status}")

    def save(self, run: Run) -> None:
        self.written = [save_run(run, p or runs_dir() / f"{run.run_id}.json") for p in self.paths]

    def finish(self, run: Run) -> None:
        self.save(run)
        if self.csv:
            self.written.append(write_csv([run], self.csv))
        for path in self.written:
            err.print(f"wrote {path}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")


def run_json(run: Run) -> dict[str, Any]:
    return run_to_dict(run)


def finish_run(run: Run, saver: Saver, render: Callable[[Run], Any]) -> int:
    """Save, print the table, and pick the exit code (130 when interrupted)."""
    saver.finish(run)
    if run.measurements:
        out.print(render(run))
    if run.interrupted:
        err.print(f"interrupted: kept {len(run.measurements)} measurement(s)")
        return 130
    return 0
