"""``chipfit catalog`` end to end: --check passes on the shipped catalog (a real process), the
list fits 80 columns with the age of each price, a user catalog's contract price shows up,
and a device with a gap is a note in ``chipfit predict`` while the others are answered."""

from __future__ import annotations

import json

GAP = ('schema_version = 2\n[devices.half-gpu]\nname = "Half GPU"\nvendor = "X"\nkind = "gpu"\n'
       'memory_gb = { value = 8.0 }\n')
CONTRACT = ('schema_version = 2\n[devices.h100-sxm]\n'
            'prices = [ { provider = "acme", usd_hr = 1.25, date = "2026-11-01" } ]\n')


def test_check_passes_on_the_shipped_catalog(cli):
    proc = cli("catalog", "--check", "--json", isolated=True)  # a real `python -m chipfit`
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] == 0 and report["warnings"] > 0
    assert any("stale" in i["what"] for i in report["items"])


def test_list_fits_80_columns_and_shows_price_age(cli):
    proc = cli("catalog", env={"COLUMNS": "80"}, check=True)
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    h100 = next(line for line in lines if " h100-sxm " in line)
    assert h100.rstrip(" │").split()[-1].endswith(("mo", "y", "new"))  # the price's age
    assert "(r)" in proc.stdout and "priced by" in proc.stdout  # named, hidden at 80
    wide = cli("catalog", "--wide", check=True).stdout
    # aws, lambda, runpod, hyperstack
    assert any(" h100-sxm " in line and "median of 4" in line for line in wide.splitlines())


def test_a_user_contract_price_and_show_json(cli, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(CONTRACT)
    proc = cli("catalog", "show", "h100-sxm", "--catalog", str(path), "--json", check=True)
    entry = json.loads(proc.stdout)
    assert entry["price"]["provider"] == "acme" and entry["price"]["usd_hr"] == 1.25
    assert entry["prices"][0]["origin"] == str(path)
    cheapest = cli("catalog", "show", "h100-sxm", "--price-basis", "cheapest", "--json",
                   check=True)
    assert json.loads(cheapest.stdout)["price"]["basis"] == "cheapest"


def test_predict_notes_a_device_with_a_gap_and_answers_the_rest(cli, tmp_path):
    path = tmp_path / "gap.toml"
    path.write_text(GAP)
    proc = cli("predict", "matmul", "-H", "half-gpu,h100-sxm", "--no-measure", "-s", "256",
               "--catalog", str(path), "--json", check=True)
    rows = json.loads(proc.stdout)
    text = json.dumps(rows)
    assert "h100-sxm" in text and "half-gpu" not in text
    assert "not predicted: half-gpu" in proc.stderr
