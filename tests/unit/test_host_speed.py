"""The eager host an accelerator prediction assumes (issue 24 item 5): which host, how much
the kernel data's hosts differ, and a user's own host speed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipfit.analysis.gpu_predict import HostCosts, eager_pipeline
from chipfit.cost.records import OpCost, WorkloadCosts
from chipfit.errors import InvalidInputError
from chipfit.predictors import HOST_SPEEDS, check_host_speed

HOST = HostCosts((("elementwise", 20e-6), ("linear", 40e-6)), 2e-6, 4e-6, "test",
                 (("fast-host", 0.9), ("slow-host", 1.6)))


def _costs(ops: list[OpCost], modules: int = 3) -> WorkloadCosts:
    return WorkloadCosts("w", "1", "float32", "inference", "torch", "test", tuple(ops),
                         module_calls=modules)


def test_a_host_twice_as_fast_halves_every_host_cost_and_says_so():
    fast = HOST.at_speed(2.0)
    assert fast.kernel("linear") == pytest.approx(20e-6)
    assert fast.kernel("softmax") == pytest.approx(10e-6)  # unknown family: elementwise's
    assert (fast.view_s, fast.module_s) == pytest.approx((1e-6, 2e-6))
    assert HOST.machine_range() == (0.9, 1.6)
    assert "0.90-1.60x" in HOST.described() and "2x as fast" in fast.described()
    assert HostCosts((), 0.0, 0.0, "none").machine_range() == (1.0, 1.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            HOST.at_speed(bad)


@pytest.mark.parametrize("bad", [0, -1, "nan", "inf", "-inf", "1e400", "abc", "", None, True,
                                 HOST_SPEEDS[0] / 2, HOST_SPEEDS[1] * 2])
def test_a_host_speed_outside_what_hosts_do_is_one_line(bad):
    with pytest.raises(InvalidInputError) as info:
        check_host_speed(bad)
    assert "\n" not in str(info.value) and "host speed" in str(info.value)


def test_host_speeds_in_range_are_taken_as_numbers():
    assert check_host_speed("2") == 2.0
    assert check_host_speed(HOST_SPEEDS[0]) == HOST_SPEEDS[0]
    assert check_host_speed(HOST_SPEEDS[1]) == HOST_SPEEDS[1]


ops = st.lists(st.builds(
    OpCost, op=st.sampled_from(["add", "linear", "gelu"]), op_class=st.sampled_from(
        ["elementwise", "matmul"]), dtype=st.just("float32"),
    flops=st.floats(0, 1e9), bytes_moved=st.floats(1, 1e8), kernels=st.integers(0, 3),
    count=st.integers(1, 20)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(ops, st.floats(*HOST_SPEEDS), st.floats(*HOST_SPEEDS),
       st.floats(1e-7, 1e-3))
def test_a_faster_host_never_makes_a_call_slower_nor_faster_than_its_device(
        operators, a, b, per_byte_s):
    costs = _costs(operators)
    device = lambda o: o.bytes_moved * per_byte_s * 1e-6  # noqa: E731
    slow, fast = sorted((a, b))
    t_slow, dev_slow, host_slow, _ = eager_pipeline(costs, HOST.at_speed(slow), device)
    t_fast, dev_fast, host_fast, _ = eager_pipeline(costs, HOST.at_speed(fast), device)
    assert t_fast <= t_slow * (1 + 1e-12)
    assert dev_fast == pytest.approx(dev_slow) and host_fast <= host_slow * (1 + 1e-12)
    assert t_fast >= dev_fast * (1 - 1e-12)  # the device's own time is never hidden
    assert t_slow >= host_slow * (1 - 1e-12) or not any(o.kernels for o in operators)


def test_every_route_holds_a_power_capped_board_to_the_same_sustained_share():
    """The kernel route, the engine layer and the LLM rates price a 70 W T4's matrix peaks
    at one sustained-clock share, and a 700 W H100 at its full peak."""
    from chipfit.analysis.stacks import hardware_from_spec
    from chipfit.hardware.catalog import load_catalog
    from chipfit.pipelines.llm import catalog_device
    from chipfit.predictors import sustained_share

    catalog = load_catalog()
    t4, h100 = sustained_share("t4"), sustained_share("h100-sxm")
    assert 0.3 < t4 < 0.8 and h100 == 1.0 and sustained_share("tpu-v5e") == 1.0
    rate = dict(catalog_device(catalog["t4"]).matmul)["float16"][0][1]
    assert rate == pytest.approx(catalog["t4"].peak("fp16")
                                 * catalog["t4"].efficiency("matmul").value * t4)
    assert any("power cap" in n for n in catalog_device(catalog["t4"]).notes)
    assert not any("power cap" in n for n in catalog_device(catalog["h100-sxm"]).notes)
    engine = hardware_from_spec(catalog["t4"], "int8", sustained=t4)
    assert engine.peak == pytest.approx(catalog["t4"].peak("int8") * t4)
    assert "power cap" in engine.peak_note
