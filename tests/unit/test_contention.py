"""Contention evidence and what is done with it: the verdict from evidence numbers, the stall
signature, re-measuring with a back-off, and the one rule for analysis (pure parts, fakes for
the clock and the executor). tests/e2e/test_busy_machine.py loads the real machine."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from tests._screens import paragraphs

from chipfit.analysis import trust
from chipfit.execute import retry
from chipfit.execute.base import Executor
from chipfit.results import Discovery, Measurement, Run
from chipfit.spec import DeviceRef, Job
from chipfit.store.runs import SCHEMA_VERSION, load_run, run_from_dict, run_to_dict
from chipfit.timing import contention
from chipfit.timing.contention import Snapshot, evidence, judge, stall_gap_s

QUIET = {"cores": 2.0, "load1": 1.1, "steal_share": 0.0, "wait_share": 0.01, "wait_s": 0.0005,
         "nivcsw": 1.0, "nivcsw_per_s": 4.0, "probe_ratio": 1.02, "stall_s": 0.0}


def test_quiet_evidence_is_not_contended_and_keeps_its_numbers() -> None:
    verdict = judge(QUIET)
    assert verdict.contended is False and verdict.reasons == () and verdict.note == ""
    assert dict(verdict.numbers) == QUIET


@pytest.mark.parametrize(("change", "words"), [
    ({"steal_share": 0.12}, "CPU steal 12%"),
    ({"wait_share": 0.6, "wait_s": 0.05, "others_share": 0.1, "others_s": 0.01},
     "waited for a core 60%"),
    ({"probe_ratio": 2.3}, "reference probe 2.3x slower"),
    ({"others_share": 0.5, "others_s": 0.2}, "other processes used 50% of our cores"),
    ({"stall_s": 0.024}, "stall signature: blocks 24.0 ms slow"),
    ({"stall_vs_serial": 5000.0}, "5000x the one-thread time"),
    # the indirect pair decides where the run-queue wait cannot be read (no schedstat)
    ({"load1": 4.8, "nivcsw": 80.0, "nivcsw_per_s": 400.0, "wait_share": math.nan},
     "load 4.8 on 2 CPUs"),
    ({"load1": 9.0, "cpus": 4.0, "nivcsw": 80.0, "nivcsw_per_s": 400.0, "wait_share": math.nan},
     "load 9.0 on 4 CPUs"),
])
def test_each_signal_alone_marks_the_point_and_names_itself(change: dict, words: str) -> None:
    verdict = judge({**QUIET, **change})
    assert verdict.contended is True
    assert words in verdict.note


def test_weak_signals_alone_do_not_mark_a_point() -> None:
    # a high load average lags by a minute: alone it is no evidence about this point
    assert judge({**QUIET, "load1": 6.0}).contended is False
    # preemption without excess load: the machine is not oversubscribed
    assert judge({**QUIET, "nivcsw": 90.0, "nivcsw_per_s": 300.0}).contended is False
    # a tiny absolute wait in a short window is a wakeup delay, not contention
    assert judge({**QUIET, "wait_share": 0.3, "wait_s": 0.0003}).contended is False
    # nothing readable (not Linux): unknown, not quiet
    assert judge({}).contended is None


def test_the_machine_wide_load_is_read_against_every_cpu_not_our_share() -> None:
    # pinned to one core of two (taskset, a cpuset): the other core's work lifts the load
    # average, which covers the whole machine, but does not share our core
    pinned = {**QUIET, "cores": 1.0, "cpus": 2.0, "load1": 2.6, "nivcsw": 8.0,
              "nivcsw_per_s": 60.0, "wait_share": math.nan}
    assert judge(pinned).contended is False
    assert judge({**pinned, "load1": 3.2}).contended is True  # more runnable than all CPUs
    # evidence stored before ``cpus`` was recorded reads the load against the cores, as then
    assert judge({k: v for k, v in pinned.items() if k != "cpus"}).contended is True


def test_preemption_that_cost_no_waiting_does_not_mark_a_point() -> None:
    # Seen in a parallel test run, pinned to one core of two: the other core's work lifted
    # the load to 3.6 and a timer woke on ours 85 times a second, yet the point waited 1.7%
    # of its window and nobody else used our core: measured correctly, not contended.
    seen = {**QUIET, "cores": 1.0, "cpus": 2.0, "load1": 3.57, "nivcsw": 29.0,
            "nivcsw_per_s": 84.9, "wait_share": 0.017, "wait_s": 0.0058, "others_share": 0.013,
            "others_s": 0.0045}
    assert judge(seen).contended is False
    # a direct signal fires: the pair is named beside it
    probe = judge({**seen, "probe_ratio": 1.6})
    assert probe.contended is True and "load 3.6 on 2 CPUs, 85 preemptions/s" in probe.note


def test_run_queue_wait_among_our_own_threads_is_not_sharing() -> None:
    # XLA's pool has more threads than cores: they wait for each other on a quiet machine
    own = {**QUIET, "wait_share": 0.8, "wait_s": 0.08, "others_share": 0.01, "others_s": 0.002}
    assert judge(own).contended is False
    # the same wait while another process used a tenth of our cores is sharing
    shared = {**own, "others_share": 0.1, "others_s": 0.02}
    assert "waited for a core 80%" in judge(shared).note
    # a short window's 10 ms jiffies are no neighbour: both the share and the seconds must fire
    assert judge({**QUIET, "others_share": 0.5, "others_s": 0.01}).contended is False


def test_in_a_window_too_short_for_jiffies_the_wait_counts_on_a_busy_machine_only() -> None:
    # Seen in a parallel test run: jax:cpu on one pinned core, a 31 ms window (others' share
    # unread), XLA's threads waiting for each other 61% of it, load 0.56: not contended.
    xla = {**QUIET, "cores": 1.0, "cpus": 2.0, "load1": 0.56, "wait_share": 0.61,
           "wait_s": 0.019, "nivcsw": 815.0, "nivcsw_per_s": 26140.0, "window_s": 0.031}
    assert judge(xla).contended is False
    # the same wait with more runnable tasks than CPUs: someone else may hold our core
    assert "waited for a core 61%" in judge({**xla, "load1": 3.4}).note
    # no load either (not Linux, or /proc/loadavg unreadable): the wait is all there is
    assert judge({**xla, "load1": math.nan}).contended is True


def test_others_cpu_time_is_busy_jiffies_minus_our_own() -> None:
    ticks = contention._clock_ticks()
    before = Snapshot(wall=10.0, load1=1.0, steal=0, total=0, nivcsw=0, wait_ns=0.0,
                      busy_s=100.0, own_s=5.0)
    # 0.5 s on our cores: busy 0.9 CPU-s of which 0.4 were ours -> others 0.5 of 1.0 possible
    after = Snapshot(wall=10.5, load1=1.0, steal=0, total=0, nivcsw=0, wait_ns=0.0,
                     busy_s=100.9, own_s=5.4)
    numbers = dict(evidence(before, after, 1e-4, 1e-4).numbers)
    cores = contention._cores()
    assert numbers["others_s"] == pytest.approx(0.5)
    assert numbers["others_share"] == pytest.approx(0.5 / (cores * 0.5))
    # under five jiffies per core of window the share is not read at all
    short = Snapshot(**{**after.__dict__, "wall": 10.0 + 4 / ticks})
    assert "others_share" not in dict(evidence(before, short, 1e-4, 1e-4).numbers)
    # the real counters: readable on Linux and consistent (busy cores include our own time)
    now = contention.snapshot()
    if math.isfinite(now.busy_s):
        assert now.busy_s > 0 and now.own_s > 0


def test_the_stall_signature_in_raw_block_times() -> None:
    fast = [0.004] * 10
    assert stall_gap_s(fast) == 0.0
    stalled = fast[:8] + [0.029, 0.031]  # two blocks waited a scheduler quantum
    assert stall_gap_s(stalled) == pytest.approx(0.026)
    assert stall_gap_s(fast[:9] + [0.030]) == 0.0  # one slow block: an interrupt, not a stall
    assert stall_gap_s([0.1, 0.1, 0.101, 0.102]) == 0.0  # long blocks varying by 1 ms: noise


def test_evidence_from_snapshots_of_a_quiet_and_of_a_busy_window() -> None:
    before = Snapshot(wall=10.0, load1=1.0, steal=100, total=10_000, nivcsw=5, wait_ns=1e6)
    quiet = Snapshot(wall=10.5, load1=1.1, steal=100, total=10_100, nivcsw=6, wait_ns=2e6)
    ok = evidence(before, quiet, probe_after_s=1.01e-4, baseline_s=1e-4, device="torch:cpu")
    assert ok.contended is False
    numbers = dict(ok.numbers)
    assert numbers["window_s"] == pytest.approx(0.5) and numbers["wait_s"] == pytest.approx(1e-3)
    busy = Snapshot(wall=10.5, load1=4.8, steal=100, total=10_100, nivcsw=120, wait_ns=3.0e8)
    bad = evidence(before, busy, probe_after_s=1.0e-4, baseline_s=1e-4, device="torch:cpu",
                   block_s=[0.004] * 6 + [0.03, 0.03])
    assert bad.contended is True
    assert dict(bad.numbers)["wait_share"] == pytest.approx(0.598)
    assert "waited for a core" in bad.note and "load 4.8" in bad.note
    if contention._cores() > 1:
        assert "stall signature" in bad.note
    # one thread cannot stall on a missing core: no stall reading at @1t
    single = evidence(before, busy, 1e-4, 1e-4, "torch:cpu@1t", [0.004] * 6 + [0.03, 0.03])
    assert dict(single.numbers)["stall_s"] == 0.0


def test_watch_runs_the_work_once_and_reads_real_counters() -> None:
    calls = []
    result, found = contention.watch(lambda: calls.append(1) or "done")
    assert result == "done" and calls == [1]
    numbers = dict(found.numbers)
    assert numbers["cores"] >= 1 and numbers["window_s"] > 0
    assert found.contended in (True, False)  # this machine is shared: either is possible


# ---- the run-level stall check and re-measuring ----------------------------------------------
def _m(device: str, per_call: float, contended: bool | None = False, size: str = "70x30@30x70",
       attempts: int = 1) -> Measurement:
    return Measurement("matmul", size, device, block_times_s=(per_call,) * 5,
                       stop_reason="ci_target", contended=contended, attempts=attempts,
                       contention_note="threads waited for a core 50% of the time"
                       if contended else "")


def test_a_parallel_point_thousands_of_times_slower_than_one_thread_is_a_stall() -> None:
    # the bug report: 70x30 matmul at 32 ms on 2 threads, 6 us on one
    marked = retry.mark_stalls([_m("torch:cpu", 0.032), _m("torch:cpu@1t", 6e-6)])
    assert marked[0].contended is True and "one-thread time" in marked[0].contention_note
    assert marked[1].contended is False
    # the quiet seeds' figure: 12.6 us at two threads, 5.9 us at one - parallelism loses, no stall
    normal = retry.mark_stalls([_m("torch:cpu", 12.6e-6), _m("torch:cpu@1t", 5.9e-6)])
    assert [m.contended for m in normal] == [False, False]


class _FakeExecutor(Executor):
    """Answers each job from a script of per-call times and contention verdicts."""

    name = "fake"

    def __init__(self, script: dict[str, list[tuple[float, bool]]]) -> None:
        self.script, self.ran = script, []

    def run(self, jobs, discovery):
        for job in jobs:
            self.ran.append(str(job.device))
            per_call, busy = self.script[str(job.device)].pop(0)
            yield job, _m(str(job.device), per_call, busy)


def _jobs(*devices: str) -> list[Job]:
    return [Job("matmul", "70x30@30x70", DeviceRef.parse(d)) for d in devices]


def test_contended_points_are_re_measured_after_a_back_off() -> None:
    jobs = _jobs("torch:cpu", "torch:cpu@1t")
    done = [_m("torch:cpu", 1e-5, True), _m("torch:cpu@1t", 6e-6, False)]
    executor = _FakeExecutor({"torch:cpu": [(1.2e-5, False)]})
    pauses: list[float] = []
    run = Run("r", "bench", "now", measurements=tuple(done))
    run, changed = retry.remeasure_contended(jobs, done, run, executor, first_pass_s=10.0,
                                             sleep=pauses.append, clock=lambda: 0.0)
    assert changed and executor.ran == ["torch:cpu"] and pauses == [retry.BACKOFF_S]
    again = run.measurements[0]
    assert again.contended is False and again.attempts == 2 and again.median_s == 1.2e-5
    summary = trust.summarize(run.measurements)
    assert (summary.retried, summary.still_contended, summary.contended) == (1, 0, 0)


def test_re_measuring_is_bounded_in_rounds_and_time() -> None:
    jobs = _jobs("torch:cpu")
    done = [_m("torch:cpu", 1e-5, True)]
    executor = _FakeExecutor({"torch:cpu": [(1e-5, True)] * 5})
    pauses: list[float] = []
    run = Run("r", "bench", "now", measurements=tuple(done))
    run, _ = retry.remeasure_contended(jobs, done, run, executor, 10.0, sleep=pauses.append,
                                       clock=lambda: 0.0)
    assert len(executor.ran) == retry.MAX_ROUNDS and pauses == [1.0, 2.0]
    assert run.measurements[0].attempts == 1 + retry.MAX_ROUNDS and run.measurements[0].contended
    assert "stayed contended" in trust.warning(run.measurements)
    # no time left in the budget: nothing is re-measured
    late = _FakeExecutor({"torch:cpu": [(1e-5, False)]})
    retry.remeasure_contended(jobs, [_m("torch:cpu", 1e-5, True)], run, late, 10.0,
                              sleep=pauses.append, clock=iter([0.0, 1e9]).__next__)
    assert late.ran == []
    # the budget runs out inside a round: the points not yet begun are left as they were
    jobs3 = _jobs("torch:cpu", "torch:cpu@2t", "torch:cpu@3t")
    three = [_m(str(j.device), 1e-5, True) for j in jobs3]
    slow = _FakeExecutor({str(j.device): [(1e-5, False)] for j in jobs3})
    ticks = iter([0.0, 0.0, 100.0, 100.0, 100.0])
    run3, _ = retry.remeasure_contended(jobs3, three, Run("r", "b", "now"), slow, 10.0,
                                        sleep=pauses.append, clock=lambda: next(ticks))
    assert slow.ran == ["torch:cpu"]
    assert [m.attempts for m in run3.measurements] == [2, 1, 1]
    # a re-measurement that crashed keeps the timing it had, counted as an attempt
    crashed = _FakeExecutor({"torch:cpu": []})

    def crash(jobs, discovery):
        yield jobs[0], Measurement("matmul", "70x30@30x70", "torch:cpu", status="error")

    crashed.run = crash
    kept, _ = retry.remeasure_contended(jobs, [_m("torch:cpu", 1e-5, True)], run, crashed,
                                        10.0, sleep=pauses.append, clock=lambda: 0.0)
    assert kept.measurements[0].ok and kept.measurements[0].attempts == 3
    assert retry.retry_budget_s(1.0) == retry.BUDGET_MIN_S
    assert retry.retry_budget_s(1e6) == retry.BUDGET_MAX_S


# ---- the rule for analysis, the summary and the warning -------------------------------------
def test_contended_points_are_left_out_unless_a_series_has_nothing_else() -> None:
    ms = [_m("torch:cpu", 1e-3, False, "64"), _m("torch:cpu", 9e-2, True, "128"),
          _m("jax:cpu:0", 2e-3, True, "64"), _m("jax:cpu:0", 3e-3, True, "128"),
          _m("torch:cpu@1t", 1e-3, None, "64")]
    screened = trust.screen(ms)
    assert [m.size for m in screened.left_out] == ["128"]  # torch:cpu has a quiet point
    assert [(m.device, m.size) for m in screened.kept] == [
        ("torch:cpu", "64"), ("jax:cpu:0", "64"), ("jax:cpu:0", "128"), ("torch:cpu@1t", "64")]
    jax = ("matmul", "jax:cpu:0", "float32", "inference")
    assert screened.labelled == {jax} and screened.marked(jax)
    assert not screened.marked(("matmul", "torch:cpu", "float32", "inference"))
    assert trust.source_of(ms[2:4]) == "measured, from contended points"
    assert trust.source_of(ms[:1]) == "measured"


def test_the_warning_names_the_load_the_count_and_the_cause() -> None:
    busy = Measurement("matmul", "64", "torch:cpu", block_times_s=(1e-3,) * 5, contended=True,
                       contention=(("cores", 2.0), ("load1", 4.8)),
                       contention_note="threads waited for a core 60% of the time")
    quiet = Measurement("matmul", "64", "torch:cpu@1t", block_times_s=(1e-3,) * 5,
                        contended=False, contention=(("cores", 2.0), ("load1", 4.1)))
    line = trust.warning([busy, quiet, quiet])
    assert line.startswith("machine busy: load 4.8 on 2 CPUs; 1 of 3 points contended "
                           "(run-queue wait)")
    assert "\n" not in line
    calm = replace(quiet, contention=(("cores", 2.0), ("load1", 3.9)))
    assert trust.warning([calm, calm]) is None  # no point marked, load under 2x the CPUs


# ---- the one busy-machine warning: stored loads and the load now ----------------------------
def _loadavg(monkeypatch: pytest.MonkeyPatch, text: str | None) -> None:
    """Hand the contention module a /proc/loadavg (its one reader of /proc is the seam)."""
    real = contention._read
    monkeypatch.setattr(contention, "_read",
                        lambda path: text if path == "/proc/loadavg" else real(path))


@pytest.mark.parametrize(("text", "load1"), [
    ("293.12 250.00 120.40 300/900 4242\n", 293.12),
    ("0.52 0.40 0.30 1/200 17\n", 0.52),
    (None, math.nan),  # not Linux, or unreadable
    ("", math.nan),
    ("garbage\n", math.nan),
    ("nan 1 1 1/1 1\n", math.nan),
    ("-4 1 1 1/1 1\n", math.nan),
])
def test_the_load_now_is_read_through_the_seam(monkeypatch, text, load1) -> None:
    _loadavg(monkeypatch, text)
    load = contention.machine_load()
    assert load.cpus >= 1
    assert (math.isnan(load.load1) and math.isnan(load1)) or load.load1 == load1


@pytest.mark.parametrize(("load1", "cpus", "overloaded"), [
    (293.0, 2, True),  # the bug report: advise said nothing
    (4.0, 2, True),  # every runnable task gets at most half a CPU
    (3.9, 2, False),
    (2.9, 1, True),
    (1.9, 1, False),  # 2x one CPU but not LOAD_EXCESS above it
    (64.0, 64, False),
    (128.0, 64, True),
    (math.nan, 2, False),
    (5.0, 0, False),
])
def test_overloaded_means_far_above_the_cpus(load1, cpus, overloaded) -> None:
    assert contention.overloaded(load1, cpus) is overloaded
    assert contention.MachineLoad(load1, cpus).overloaded is overloaded


def test_an_overloaded_machine_is_warned_about_even_when_no_point_was_marked(monkeypatch) -> None:
    quiet = Measurement("matmul", "64", "torch:cpu", block_times_s=(1e-3,) * 5, contended=False,
                        contention=(("cores", 2.0), ("cpus", 2.0), ("load1", 0.8)))
    busy_now = contention.MachineLoad(293.0, 2)
    line = trust.warning([quiet, quiet], busy_now)
    assert line.startswith("machine busy: load 293.0 on 2 CPUs")
    assert "none of the 2 points was marked contended" in line and "\n" not in line
    # nothing measured (validate's summary, calibrate): the load alone speaks
    alone = trust.warning((), busy_now)
    assert alone.startswith("machine busy: load 293.0 on 2 CPUs") and "measured now" in alone
    assert trust.warning((), contention.MachineLoad(1.0, 2)) is None
    assert trust.warning([quiet], None) is None
    # the load stored with a point counts as much as the load now
    stored = replace(quiet, contention=(("cores", 1.0), ("cpus", 2.0), ("load1", 9.5)))
    assert "load 9.5 on 2 CPUs" in trust.warning([quiet, stored], contention.MachineLoad(0.1, 2))
    # the heaviest relative to its CPUs wins
    heavy = trust.heaviest_load([stored], contention.MachineLoad(12.0, 8))
    assert (heavy.load1, heavy.cpus) == (9.5, 2)
    # marked points keep the cause-naming line
    marked = replace(quiet, contended=True, contention_note="CPU steal 12%")
    assert "1 of 2 points contended (CPU steal)" in trust.warning([marked, quiet], busy_now)


def test_the_commands_warning_reads_the_load_now(monkeypatch, capsys) -> None:
    from chipfit.commands import _common

    _loadavg(monkeypatch, "293.00 200.00 100.00 300/900 1\n")
    monkeypatch.setattr(contention, "_cpus", lambda: 2)
    assert _common.warn_if_busy() is True
    err = capsys.readouterr().err
    # one warning, wrapped at the console's width (continuation lines indented)
    assert err.startswith("warning: machine busy: load 293.0 on 2 CPUs")
    assert len(paragraphs(err)) == 1 and paragraphs(err)[0].count("warning:") == 1
    _loadavg(monkeypatch, "0.10 0.10 0.10 1/100 1\n")
    assert _common.warn_if_busy() is False and capsys.readouterr().err == ""


def test_contention_is_stored_and_old_files_read_as_unknown(tmp_path) -> None:
    m = Measurement("matmul", "64", "torch:cpu", block_times_s=(1e-3,) * 3, contended=True,
                    contention=(("load1", 4.8), ("wait_share", 0.6)), contention_note="x",
                    attempts=2)
    run = Run("20260101T000000Z-aaaaaa", "bench", "2026-01-01", measurements=(m,),
              discovery=Discovery(()))
    data = run_to_dict(run)
    assert data["schema_version"] == SCHEMA_VERSION >= 3  # 3: contention; 4: stacks
    assert data["measurements"][0]["contention"] == {"load1": 4.8, "wait_share": 0.6}
    assert data["contention"]["contended"] == 1 and data["contention"]["retried"] == 1
    back = run_from_dict(json.loads(json.dumps(data))).measurements[0]
    assert back == m
    old = {**data, "schema_version": 2, "measurements": [
        {k: v for k, v in data["measurements"][0].items()
         if k not in ("contended", "contention", "contention_note", "attempts")}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    legacy = load_run(path).measurements[0]
    assert legacy.contended is None and legacy.contention == () and legacy.attempts == 1
    assert trust.summarize([legacy]).unknown == 1 and trust.warning([legacy]) is None
    assert math.isclose(legacy.median_s, 1e-3)


def test_a_re_measured_point_keeps_where_it_came_from_and_its_launches() -> None:
    from dataclasses import replace

    jobs = _jobs("torch:cpu")
    first = replace(_m("torch:cpu", 1e-5, True),
                    metadata=(("attempts", "2"), ("moved_from", "abc123"), ("node", "n1")))

    class _Tagged(_FakeExecutor):
        def run(self, jobs, discovery):
            for job, m in super().run(jobs, discovery):
                yield job, replace(m, metadata=(("attempts", "1"), ("node", "n2")))

    run = Run("r", "bench", "now", measurements=(first,))
    run, _ = retry.remeasure_contended(jobs, [first], run, _Tagged({"torch:cpu": [(1e-5, False)]}),
                                       10.0, sleep=lambda s: None, clock=lambda: 0.0)
    meta = run.measurements[0].meta
    # the first worker died once before its result: 2 launches, then 1 more for the re-measure
    assert meta["attempts"] == "3" and meta["moved_from"] == "abc123" and meta["node"] == "n2"
