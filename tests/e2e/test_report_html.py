"""``chipfit report``: the HTML file opened in headless Chromium, offline and inert.

Chromium (Debian's ``chromium`` package, installed by .ci/run) is driven over its DevTools
pipe (tests/e2e/_chromium.py). Without it these tests skip on a developer machine and fail
in CI (``CI=true``).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _chromium import CHROMIUM_MISSING, Browser, find_chromium
from tests.conftest import run_cli

from chipfit.results import Measurement, Run
from chipfit.store.runs import load_run, save_run

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(2)>"
XSS_ATTR = "\"'><svg onload=alert(3)>"
PROBES = {
    "figures": "document.querySelectorAll('figure svg').length",
    "paths": "Math.min(...[...document.querySelectorAll('figure svg')]"
             ".map(s => s.querySelectorAll('path').length))",
    "series": "document.querySelectorAll('[id^=\"series-\"]').length",
    "crossovers": "document.querySelectorAll('[id^=\"crossover-\"]').length",
    "scripts": "document.scripts.length",
    "images": "document.images.length",
    "tags": "document.querySelectorAll('.src').length",
    "claims": "document.getElementById('claims') !== null",
    "text": "document.body.innerText",
    "labels": "[...document.querySelectorAll('[id^=\"crossover-label-\"] text')]"
              ".map(t => t.textContent)",
}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the module's page loads (each in a tab of its own): starting
    the browser costs more than loading a page."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI: .ci/run installs Debian's chromium")
        pytest.skip(CHROMIUM_MISSING)
    with Browser(path) as browser:
        yield browser


@pytest.fixture(scope="module")
def sweep_json(tmp_path_factory: pytest.TempPathFactory, whole_machine) -> Path:
    """A real sweep: matmul on torch's CPU at 1 and 2 threads (two cores), short timing. In
    this process (conftest.run_cli): a fresh interpreter would import torch again, and the
    sweep's code path is the same."""
    home = tmp_path_factory.mktemp("home")
    out = home / "sweep.json"
    with whole_machine():
        proc = run_cli("sweep", "matmul", "--from", "16", "--to", "64", "--devices",
                       "torch:cpu@1t,torch:cpu@2t", "--budget", "0.2", "--target", "0.05",
                       "--no-save", "--json", str(out), env={"CHIPFIT_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    return out


def report(tmp_path: Path, *inputs: Path, png: bool = True) -> tuple[Path, Path]:
    html, pngs = tmp_path / "report.html", tmp_path / "png"
    args = ["report", *map(str, inputs), "-o", str(html)] + (["--png", str(pngs)] if png else [])
    # in this process when it can be (conftest.run_cli): a fresh interpreter with matplotlib
    # cost seconds a call, and the report's code path is the same
    proc = run_cli(*args, env={"CHIPFIT_HOME": str(tmp_path), "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert str(html) in proc.stdout
    return html, pngs


def assert_offline_markup(text: str) -> None:
    """No script, no external reference of any kind in the file itself."""
    assert "<script" not in text.lower()
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:|//|file:)", text, re.I)
    assert not re.search(r"url\(\s*(?!#)", text), "only in-document url(#id) references"
    assert "@import" not in text and "@font-face" not in text


def assert_not_blank(png: bytes) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3)
    assert image.width >= 800 and image.height >= 600
    assert (pixels.min(axis=1) < 200).mean() > 0.02  # enough ink: text, lines, plot marks
    assert (pixels.max(axis=1) < 30).mean() < 0.2  # ... on a white page, not a black void
    assert len(np.unique(pixels, axis=0)) > 50  # plots and tags, not a flat page


def test_report_of_a_real_sweep_loads_offline_with_plots(chromium, sweep_json, tmp_path):
    html, pngs = report(tmp_path, sweep_json)
    text = html.read_text(encoding="utf-8")
    assert_offline_markup(text)
    page = chromium.load(html, {**PROBES, "layout": LAYOUT})
    assert page.console_errors == [] and page.requests == [] and page.dialogs == []
    values = page.values
    layout = values["layout"]  # real timings: the page fits and every axis is numbered
    assert layout["scroll"] <= 1280 and layout["wide"] == [] and layout["overlaps"] == []
    assert len(layout["axes"]) == 6 and all(len(ticks) >= 3 for _, _, ticks in layout["axes"])
    assert values["figures"] == 3  # time and throughput for matmul, and the roofline
    assert values["paths"] > 10 and values["series"] >= 2
    assert values["scripts"] == 0 and values["claims"] is True
    assert values["tags"] > 20  # every number carries its provenance
    body = " ".join(values["text"].split())
    # the pair is compared: a crossing in the numbered list, or one line saying there is none;
    # points measured while the machine was shared are left out of the comparison, and with
    # too few quiet ones left the page says the pair was not compared, and why
    contended = any(m.contended for m in load_run(sweep_json).measurements)
    compared = (r"torch:cpu@1t vs torch:cpu@2t: no crossover|torch:cpu@[12]t faster below"
                + (r"|torch:cpu@1t vs torch:cpu@2t: not compared \(fewer than two sizes"
                   if contended else ""))
    assert re.search(compared, body), body
    assert load_run(sweep_json).run_id in body
    assert "measured ceiling" in text  # no catalog peaks given: the roofline says so
    assert "memory guard admits up to n =" in body and "src-predicted" in text
    assert_not_blank(page.screenshot_png)
    names = sorted(p.name for p in pngs.iterdir())
    assert names == ["roofline.png", "w0-matmul-rate.png", "w0-matmul-time.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs.iterdir())


def crossing_run() -> Run:
    """Two series built to cross at n = 111 (1e-4 + 1e-7 n s vs 1e-6 n s): the marker test."""
    rng = np.random.default_rng(0)
    ms = []
    for n in (16, 32, 64, 128, 256, 512, 1024):
        for device, t in (("torch:cpu", 1e-4 + 1e-7 * n), ("torch:cpu@1t", 1e-6 * n)):
            times = tuple(t * rng.lognormal(0, 0.01, 9))
            ms.append(Measurement("matmul", str(n), device, block_times_s=times,
                                  stop_reason="ci_target", flops=2.0 * n**3,
                                  bytes_moved=12.0 * n * n))
    return Run("20250101T000000Z-c0ffee", "sweep", "2025-01-01T00:00:00+00:00", measurements=tuple(ms))


def test_a_crossover_is_marked_on_the_plot(chromium, tmp_path):
    path = save_run(crossing_run(), tmp_path / "crossing.json")
    html, _ = report(tmp_path, path, png=False)
    page = chromium.load(html, PROBES)
    assert page.console_errors == [] and page.requests == []
    assert page.values["crossovers"] >= 1
    body = " ".join(page.values["text"].split())
    assert "n ≈ 111 (measured 64 and 128): torch:cpu@1t faster below, torch:cpu above" in body
    assert "faster device changes at n ≈ 111" in body  # the summary, at the top
    assert page.values["labels"] == ["1: ≈ 111"]  # the mark's label names its number


def poisoned(sweep_json: Path, tmp_path: Path) -> Path:
    """The real sweep, with hostile text in every user-controlled string the report shows."""
    data = json.loads(sweep_json.read_text())
    # (not the run id: one outside chipfit's own pattern is refused as it is read)
    data["command"] = XSS_IMG
    data["machine"]["hostname"] = "</title>" + XSS_SCRIPT
    data["settings"] = {"workload": XSS_SCRIPT, "label": XSS_ATTR, "axis": "n"}
    for m in data["measurements"]:
        m["workload"] = XSS_SCRIPT + " $5 model"  # $ would start mathtext in matplotlib
        m["note"] = XSS_IMG
    for d in data["discovery"]["devices"]:  # the Devices table is always shown
        d["name"] = f"{XSS_IMG} {XSS_ATTR}"
    data["discovery"]["problems"] = [{"scope": XSS_SCRIPT, "reason": XSS_IMG}]
    path = tmp_path / "poisoned.json"
    path.write_text(json.dumps(data))
    return path


def test_user_text_is_shown_as_text_and_runs_nothing(chromium, sweep_json, tmp_path):
    html, pngs = report(tmp_path, poisoned(sweep_json, tmp_path))
    text = html.read_text(encoding="utf-8")
    assert_offline_markup(text)
    assert "<img" not in text and "<svg onload" not in text  # only as escaped text
    page = chromium.load(html, PROBES)
    assert page.dialogs == [] and page.console_errors == [] and page.requests == []
    assert page.values["scripts"] == 0 and page.values["images"] == 0
    body = page.values["text"]
    assert XSS_SCRIPT + " $5 model" in body and XSS_IMG in body and XSS_ATTR in body
    assert page.values["figures"] == 3
    assert all(re.fullmatch(r"[a-z0-9-]+\.png", p.name) for p in pngs.iterdir())


def test_report_defaults_to_the_latest_run(cli, sweep_json, tmp_path):
    proc = cli("report", "-o", str(tmp_path / "none.html"))
    assert proc.returncode == 2 and "no results yet" in proc.stderr
    runs = Path(os.environ["CHIPFIT_HOME"]) / "runs"
    runs.mkdir(parents=True)
    (runs / "latest.json").write_text(sweep_json.read_text())
    out = tmp_path / "latest.html"
    cli("report", "-o", str(out), check=True)
    assert load_run(sweep_json).run_id in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("content, expect", [
    ("{}", "not a chipfit results file"),
    ("not json", "not valid JSON"),
    (json.dumps({"format": "chipfit-run", "schema_version": 99}), "newer than this chipfit"),
])
def test_bad_results_files_are_one_line_errors(cli, tmp_path, content, expect):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = cli("report", str(bad), "-o", str(tmp_path / "x.html"))
    assert proc.returncode == 2 and expect in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_roofline_uses_catalog_peaks_for_devices_the_catalog_knows():
    from chipfit.report.html import render_report
    from chipfit.results import DeviceInfo, Discovery

    h100 = DeviceInfo("torch:cuda:0", "torch", "cuda", "gpu", "NVIDIA H100 80GB HBM3",
                      memory_bytes=80 * 10**9)
    run = crossing_run()
    ms = tuple(replace(m, device="torch:cuda:0") if m.device == "torch:cpu" else m
               for m in run.measurements)
    text = render_report([replace(run, measurements=ms, discovery=Discovery((h100,)))])
    assert "torch:cuda:0: catalog peak" in text  # the roof's legend entry
    assert "torch:cpu@1t: measured ceiling" in text  # pinned CPUs are not catalog devices
    assert re.search(r"67(\.0)? TFLOP/s</span><span class=\"src src-catalog\"", text)
    assert "claims check not available" in text or "ResNet-50" in text


def test_report_reads_runs_from_the_results_database(cli, tmp_path):
    db = tmp_path / "results.sqlite3"
    proc = cli("sweep", "elementwise", "--from", "1Ki", "--to", "2Ki", "--devices",
               "torch:cpu@1t", "--budget", "0.1", "--target", "0.1", "--no-save",
               "--db", str(db), check=True)
    assert f"kept in {db}" in " ".join(proc.stderr.split())
    out = tmp_path / "from-db.html"
    cli("report", "latest", "--db", str(db), "-o", str(out), check=True)
    text = out.read_text(encoding="utf-8")
    assert "elementwise" in text and "memory guard admits up to elements =" in text
    missing = cli("report", str(tmp_path / "missing.json"), "-o", str(out))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


# ---- layout: the page at a laptop's and a phone's width ---------------------------------------

LAYOUT = """(() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const box = e => e.getBoundingClientRect();
  const out = {scroll: document.documentElement.scrollWidth, wide: [], axes: [], overlaps: [],
               outside: [], figures: document.querySelectorAll('figure svg').length};
  for (const e of document.body.querySelectorAll('*')) {
    const p = e.parentElement;
    if (!p || (e.closest('svg') && e.tagName.toLowerCase() !== 'svg')) continue;
    const b = box(e), pb = box(p);
    if (b.width > 0 && b.right > pb.right + 1 && getComputedStyle(p).overflowX === 'visible')
      out.wide.push(`${e.tagName} ${(e.textContent || '').slice(0, 40)}`);
  }
  for (const svg of document.querySelectorAll('figure svg')) {
    for (const axis of svg.querySelectorAll('g[id^="matplotlib.axis"]')) {
      const ticks = [...axis.querySelectorAll('g[id^="xtick"] text, g[id^="ytick"] text')]
        .map(t => t.textContent.trim()).filter(t => /[0-9]/.test(t));
      out.axes.push([svg.id, axis.id, ticks]);
    }
    const sb = box(svg);
    const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim())
      .map(t => [t.textContent.trim(), box(t)]);
    for (const [t, b] of texts)
      if (b.left < sb.left - 1 || b.right > sb.right + 1 || b.top < sb.top - 1
          || b.bottom > sb.bottom + 1) out.outside.push([svg.id, t]);
    texts.forEach(([ta, a], i) => texts.slice(i + 1).forEach(([tb, b]) => {
      if (a.left < b.right - .5 && b.left < a.right - .5 && a.top < b.bottom - .5
          && b.top < a.bottom - .5) out.overlaps.push([svg.id, ta, tb]);
    }));
  }
  return out;
})()"""


LONG_MODEL = ("/home/alice/projects/vision/experiments/2025/model_factories/"
              "resnet_variants.py:make_resnet50_wide")


def layout_runs() -> list[Run]:
    """What made the issue's screenshots: three runs on one machine (the same CPU in each),
    three series crossing twice close together, a contended series, and one user model (a
    long path: titles must still fit) measured by two runs 40x apart."""
    from chipfit.results import DeviceInfo, Discovery

    rng = np.random.default_rng(1)
    cpu = DeviceInfo("torch:cpu", "torch", "cpu", "cpu", "AMD EPYC 7B13", cores=2, threads=4,
                     memory_bytes=8 * 2**30, isa=("avx2", "avx512f", "fma"),
                     versions=(("torch", "2.5.1"),))
    machine = (("hostname", "box"), ("fingerprint", "f00d"))

    def point(workload, size, device, t, **kw):
        return Measurement(workload, str(size), device, stop_reason="ci_target",
                           block_times_s=tuple(t * rng.lognormal(0, 0.01, 9)), **kw)

    ms = [point("matmul", n, d, t0 + slope * n, flops=2.0 * n**3, bytes_moved=12.0 * n * n)
          for n in (16, 32, 64, 128, 256, 512, 1024)
          for d, t0, slope in (("torch:cpu", 1e-4, 1e-7), ("torch:cpu@1t", 0.0, 1e-6),
                               ("torch:cpu@2t", 1.2e-4, 0.9e-7))]
    ms += [point("elementwise", n, d, t0 + slope * n, flops=n, bytes_moved=8.0 * n,
                 contended=True, contention_note="load 3.1 on 2 CPUs")
           for n in (1024, 4096, 16384, 65536, 2**18, 2**20)
           for d, t0, slope in (("torch:cpu", 2e-6, 1e-9), ("torch:cpu@1t", 1e-6, 2e-9))]
    runs = [Run("20250101T000000Z-c0ffee", "sweep", "2025-01-01T00:00:00+00:00", machine=machine,
                discovery=Discovery((cpu,)), measurements=tuple(ms))]
    for k, scale in enumerate((1.0, 40.0)):
        model = tuple(point(LONG_MODEL, b, "torch:cpu", scale * (2e-3 + 1e-3 * b),
                            items_per_call=b, flops=1e9 * b, bytes_moved=1e8)
                      for b in (1, 2, 4, 8, 16))
        runs.append(Run(f"2025010{k + 2}T000000Z-bead{k}0", "bench",
                        f"2025-01-0{k + 2}T00:00:00+00:00", machine=machine,
                        discovery=Discovery((cpu,)), measurements=model,
                        settings=(("axis", "batch"),)))
    return runs


@pytest.fixture(scope="module")
def layout_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import chipfit  # the public API, as a user writes the page

    llm = chipfit.llm("llama-3.1-8b", ["h100-sxm", "l4", "tpu-v5e"], prompt_len=1024,
                      gen_len=256, batch=8)
    return chipfit.write_report(layout_runs(), tmp_path_factory.mktemp("layout") / "report.html",
                                llm=[llm])


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_fits_the_page_and_every_plot_reads(chromium, layout_page, width):
    page = chromium.load(layout_page, {"layout": LAYOUT, "text": PROBES["text"]},
                          width=width)
    assert page.console_errors == [] and page.requests == []
    found = page.values["layout"]
    assert found["scroll"] <= width, "the page scrolls sideways"
    assert found["wide"] == [], "elements wider than their container"
    assert found["figures"] == 9  # time and rate for 3 workloads, roofline, 2 LLM plots
    assert len(found["axes"]) == 17  # the memory chart's y axis names hardware: not numbered
    assert [a for a in found["axes"] if len(a[2]) < 3] == [], "an axis with < 3 numbered ticks"
    assert found["overlaps"] == [] and found["outside"] == []
    tokens = next(ticks for svg, axis, ticks in found["axes"]
                  if svg == "llm-0-tokens" and axis.endswith("_2"))
    assert {"20", "50"} <= set(tokens)  # between 10 and 100 on the tokens/s axis
    body = " ".join(page.values["text"].split())
    # one device row per device: the CPU seen by three runs is one row
    assert body.count("AMD EPYC 7B13, pinned to 1 thread(s)") == 1
    assert "3 runs" in body
    # the answer first: a summary per model, naming it; contended figures say so
    start = body.index("Summary", body.index("Metadata"))  # after the navigation links
    summary = body[start:body.index("Devices", start)]
    assert "matmul: fastest at n 16: torch:cpu@1t" in summary
    assert "elementwise: fastest" in summary and "contended" in summary
    assert f"{LONG_MODEL}: fastest" in summary and "1 older run(s) of it left out" in summary
    # the newest run's model (40x slower: 720 ms at batch 16), not a mix of the two runs
    assert re.search(r"at batch 16: torch:cpu \(7\d\d ms", summary), summary
    # the language model at the report's own run, priced
    assert "prompt 1024 tokens, generate 256, batch 8" in body
    assert "$ per 1M generated tokens" in body and re.search(r"\$[0-9.]+ ?estimated", body)


def test_the_llm_section_follows_the_report_flags(cli, tmp_path):
    run = save_run(crossing_run(), tmp_path / "run.json")
    out = tmp_path / "llm.html"
    cli("report", str(run), "-o", str(out), "--llm", "llama-3.2-1b", "--llm-hardware",
        "h100-sxm,l4", "--llm-prompt-len", "2048", "--llm-batch", "16", "--llm-dtype", "int8",
        check=True)
    page = out.read_text(encoding="utf-8")
    assert "prompt 2048 tokens, generate 128, batch 16, int8 weights" in page
    assert "this run: batch 16" in page  # marked on the tokens/s plot
    assert page.count('data-label="$ per 1M tokens"') == 2  # one priced cell per hardware
