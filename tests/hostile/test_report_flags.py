"""Hostile values for ``chipfit report``'s language-model flags: each is refused in one line
(exit 2, no traceback) before any results file is read or any page written."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.hostile._support import assert_refused

BASE = ["report", "--llm", "llama-3.2-1b", "--llm-hardware", "h100-sxm"]
CASES = [
    ("batch-text", ["--llm-batch", "eight"], "invalid int value"),
    ("batch-zero", ["--llm-batch", "0"], "--llm-batch"),
    ("batch-huge", ["--llm-batch", str(10**12)], "--llm-batch"),
    ("prompt-negative", ["--llm-prompt-len", "-5"], "--llm-prompt-len"),
    ("gen-huge", ["--llm-gen-len", str(10**15)], "--llm-gen-len"),
    ("context-too-long", ["--llm-prompt-len", "200000"], "context"),
    ("dtype-markup", ["--llm-dtype", "<b>int4</b>"], "dtype"),
    ("dtype-float-text", ["--llm-prompt-len", "1e3"], "invalid int value"),
]


@pytest.mark.parametrize("extra,says", [(e, s) for _, e, s in CASES], ids=[i for i, _, _ in CASES])
def test_a_bad_llm_flag_is_one_line(cli, tmp_path, extra, says):
    out = tmp_path / "r.html"
    proc = cli(*BASE, *extra, "-o", str(out))
    assert_refused(proc, 2, says)
    assert not out.exists()


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_any_batch_is_a_priced_row_or_a_one_line_refusal(batch):
    from chipfit.errors import ChipfitError
    from chipfit.pipelines.llm import llm_report
    from chipfit.report.llm_section import llm_row

    try:
        report = llm_report("llama-3.2-1b", ["h100-sxm"], 128, 16, batch)
    except ChipfitError as exc:
        assert "\n" not in str(exc) and "--batch" in str(exc)
        return
    assert report.run.batch == batch
    row = llm_row(report.rows[0])
    if report.rows[0].prediction is None:  # too big to fit: the row says why, nothing priced
        assert row[5] == "-" and row[8] == "- (no price)" and row[9] == report.rows[0].why
    else:
        assert "src-predicted" in row[5] and "$" in row[8] and "src-estimated" in row[8]
