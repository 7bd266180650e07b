"""The figures README.md quotes that change as the project grows, counted afresh.

    python benchmarks/readme_figures.py [--json]

- ``bench --quick``: points per device (the quick sizes of ``matmul`` and ``elementwise``) and
  points on this machine (its default devices: torch at every thread and at one, JAX,
  TensorFlow, whatever is installed): the plan, nothing is measured;
- the test suite: tests collected, and how many skip here before running: ``accelerator``
  tests without a GPU or TPU, ``skipif`` tests whose condition holds (the GPU-kernel-model
  tests without ``../shared/data/gpu_kernels``), the HTML tests without headless Chromium.
  Tests that decide to skip while running (a machine too busy to measure) are not counted.

README states the per-device count, which ``tests/unit/test_readme.py`` checks against the
plan; the rest it words so it does not go stale, and points here for today's numbers.
Not a test: collecting the suite imports every framework (tens of seconds).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_quick_points() -> dict[str, object]:
    """The plan of ``chipfit bench --quick``: per device, and with this machine's devices."""
    from chipfit.discovery import discover
    from chipfit.pipelines.bench import default_devices, plan
    from chipfit.spec import DeviceRef

    workloads = ["matmul", "elementwise"]
    per_device = len(plan(workloads, [DeviceRef.parse("torch:cpu")], quick=True))
    devices = default_devices(discover())
    return {"per_device": per_device, "devices": [str(d) for d in devices],
            "here": len(plan(workloads, devices, quick=True))}


class _Count:
    """A pytest plugin that only counts what collection found."""

    def __init__(self) -> None:
        self.figures: dict[str, object] = {}

    def pytest_collection_modifyitems(self, items: list) -> None:  # noqa: ANN001
        accelerator = [i for i in items if i.get_closest_marker("accelerator")]
        skipif = {}
        for item in items:
            for mark in item.iter_markers("skipif"):
                if mark.args and bool(mark.args[0]):
                    reason = mark.kwargs.get("reason", "?")
                    skipif[reason] = skipif.get(reason, 0) + 1
                    break
        html = [i for i in items if i.path.name == "test_report_html.py"
                and "chromium" in " ".join(i.fixturenames).lower()]
        self.figures = {"collected": len(items), "accelerator": len(accelerator),
                        "skipif_here": skipif,
                        "html_needing_chromium": len(html),
                        "chromium_found": bool(shutil.which("chromium")
                                               or shutil.which("chromium-browser"))}


def suite_counts() -> dict[str, object]:
    import contextlib
    import io

    import pytest

    counter = _Count()
    # the tests import each other as ``tests.*`` (as ``python -m pytest`` from the root lets
    # them); run as a script, the root is not on the path and those modules went uncounted
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with contextlib.redirect_stdout(io.StringIO()):  # one line per test: not the figures
        pytest.main(["--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider",
                     str(ROOT / "tests")], plugins=[counter])
    return counter.figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    figures = {"date": datetime.date.today().isoformat(), "bench_quick": bench_quick_points(),
               "tests": suite_counts()}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    quick, tests = figures["bench_quick"], figures["tests"]
    print(f"as of {figures['date']}:", file=sys.stderr)
    print(f"chipfit bench --quick: {quick['per_device']} points per device; {quick['here']} "
          f"here on {', '.join(quick['devices'])}")
    skips = sum(tests["skipif_here"].values())
    print(f"tests: {tests['collected']} collected; {tests['accelerator']} marked accelerator "
          f"(skip without a GPU/TPU); {skips} skipif here "
          f"({'; '.join(f'{n}: {r}' for r, n in tests['skipif_here'].items()) or 'none'}); "
          f"{tests['html_needing_chromium']} HTML tests need Chromium "
          f"({'found' if tests['chromium_found'] else 'not found: they skip'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
