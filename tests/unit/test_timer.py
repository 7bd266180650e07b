"""The timer's algorithm, driven by a fake clock and a fake asynchronous device."""

import pytest

from chipfit.spec import TimingConfig
from chipfit.timing.timer import measure


class FakeDevice:
    """Work is queued by launch() and only finishes (advancing the clock) inside wait()."""

    def __init__(self, work_s, launch_s=1e-6, first_extra_s=0.0):
        self.now = 0.0
        self.pending = 0.0
        self.work_s = work_s
        self.launch_s = launch_s
        self.first_extra_s = first_extra_s
        self.calls = 0
        self.waits = 0

    def clock(self):
        return self.now

    def launch(self):
        self.now += self.launch_s  # returns quickly: the work runs "on the device"
        work = self.work_s(self.calls) if callable(self.work_s) else self.work_s
        if self.calls == 0:
            work += self.first_extra_s
        self.pending += work
        self.calls += 1
        return self.calls

    def wait(self, out):
        self.waits += 1
        self.now += self.pending
        self.pending = 0.0


def test_both_fences_make_block_time_equal_the_device_work():
    dev = FakeDevice(work_s=1e-3, launch_s=1e-6)
    cfg = TimingConfig(min_block_s=5e-3, budget_s=1.0)
    result, _ = measure(dev.launch, dev.wait, cfg, clock=dev.clock)
    per_call = [t / result.number_per_block for t in result.block_times_s]
    # Without the trailing fence a block would last only the launches (1 us per call);
    # without the leading fence queued warm-up work would leak into the first block.
    assert per_call == pytest.approx([1e-3 + 1e-6] * len(per_call))


def test_without_leading_fence_queued_work_would_leak():
    dev = FakeDevice(work_s=1e-3)
    dev.launch()  # queue work before timing starts, as a previous job might
    cfg = TimingConfig(min_block_s=5e-3, budget_s=1.0)
    result, _ = measure(dev.launch, dev.wait, cfg, clock=dev.clock)
    # first_call is fenced on both sides: the earlier queued call is not counted in it
    assert result.first_call_s == pytest.approx(1e-3 + 1e-6)


def test_first_call_recorded_apart_from_steady_state():
    dev = FakeDevice(work_s=1e-3, first_extra_s=0.5)  # e.g. compilation
    result, _ = measure(dev.launch, dev.wait, TimingConfig(), clock=dev.clock)
    assert result.first_call_s == pytest.approx(0.501001)
    assert max(result.block_times_s) / result.number_per_block < 2e-3


def test_blocks_are_sized_for_microsecond_work():
    dev = FakeDevice(work_s=2e-6, launch_s=0.0)
    result, _ = measure(dev.launch, dev.wait, TimingConfig(min_block_s=5e-3), clock=dev.clock)
    assert result.number_per_block >= 2500
    assert all(t >= 5e-3 * 0.99 for t in result.block_times_s)


def test_stops_on_ci_target_when_steady():
    dev = FakeDevice(work_s=1e-3)
    result, _ = measure(dev.launch, dev.wait, TimingConfig(min_samples=7), clock=dev.clock)
    assert result.stop_reason == "ci_target"
    assert len(result.block_times_s) == 7


def test_noisy_work_runs_until_the_budget():
    import random

    rng = random.Random(3)
    dev = FakeDevice(work_s=lambda i: 1e-3 * (1 + rng.uniform(0, 1.0)))
    cfg = TimingConfig(budget_s=0.5, target_rel_ci=0.005, min_block_s=1e-3)
    result, _ = measure(dev.launch, dev.wait, cfg, clock=dev.clock)
    assert result.stop_reason in ("budget", "max_samples")
    assert sum(result.block_times_s) >= 0.5 or len(result.block_times_s) == cfg.max_samples


def test_moderate_noise_reaches_target_with_more_samples():
    import random

    rng = random.Random(5)
    dev = FakeDevice(work_s=lambda i: 1e-3 * (1 + rng.gauss(0, 0.05)))
    cfg = TimingConfig(budget_s=100.0, target_rel_ci=0.01, min_block_s=1e-3)
    result, _ = measure(dev.launch, dev.wait, cfg, clock=dev.clock)
    assert result.stop_reason == "ci_target"
    assert len(result.block_times_s) > cfg.min_samples


def test_long_calls_keep_at_least_three_samples():
    dev = FakeDevice(work_s=2.0)
    result, _ = measure(dev.launch, dev.wait, TimingConfig(budget_s=1.0), clock=dev.clock)
    assert result.number_per_block == 1
    assert len(result.block_times_s) == 3
    assert result.warmup_calls == 1
    assert result.stop_reason == "budget"


def test_fixed_count_steps_are_fenced_on_both_edges_like_the_timer():
    """Data-parallel ranks time a fixed number of steps: each one the device's work, with
    work queued before the first step kept out of it."""
    from chipfit.timing.steps import fenced_block, fenced_calls

    dev = FakeDevice(work_s=lambda i: 1e-3 * (i + 1), launch_s=1e-6)
    dev.pending = 5.0  # queued before timing starts: must not leak into the first step
    times = fenced_calls(dev.launch, dev.wait, 3, clock=dev.clock)
    assert times == pytest.approx((1e-3 + 1e-6, 2e-3 + 1e-6, 3e-3 + 1e-6))
    assert dev.calls == 3 and dev.waits == 6
    assert fenced_block(dev.launch, dev.wait, 2, clock=dev.clock) == pytest.approx(9e-3 + 2e-6)
    assert fenced_block(dev.launch, dev.wait, 0, clock=dev.clock) == 0.0 and dev.calls == 5
