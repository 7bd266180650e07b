"""torch_xla discovery and fencing.

torch_xla cannot be installed on this CPU-only machine, so its API is stood in for by small
fake modules with the documented signatures (torch_xla 2.x: ``torch_xla.sync``,
``xm.wait_device_ops``, ``xm.get_xla_supported_devices``, ``xm.xla_device_kind``,
``xm.get_memory_info``, ``torch_xla.runtime.device_type``). What is tested is chipfit's own
logic around them: the mapping to DeviceInfo, the reasons kept, and the order of the sync.
"""

from __future__ import annotations

import sys
import types

import pytest

from chipfit.backends.torch import _synchronizer, _xla_devices

torch = pytest.importorskip("torch")
VERSIONS = (("torch", "x"),)


def _install(monkeypatch, *, pjrt="TPU", devices=("xla:0", "xla:1"), kind="TPU v4",
             memory=None, fail=None, calls=None, with_sync=True):
    calls = calls if calls is not None else []
    root = types.ModuleType("torch_xla")
    root.__version__ = "2.8.0"
    core = types.ModuleType("torch_xla.core")
    xm = types.ModuleType("torch_xla.core.xla_model")
    xr = types.ModuleType("torch_xla.runtime")

    def supported():
        if fail:
            raise RuntimeError(fail)
        return list(devices)

    xm.get_xla_supported_devices = supported
    xm.xla_device_kind = lambda dev: kind
    xm.get_memory_info = lambda dev: memory if memory is not None else {
        "bytes_used": 0, "bytes_limit": 32 * 2**30}
    xm.wait_device_ops = lambda devices=(): calls.append("wait_device_ops")
    xm.mark_step = lambda: calls.append("mark_step")
    if with_sync:
        root.sync = lambda: calls.append("sync")
    xr.device_type = lambda: pjrt
    root.core, core.xla_model, root.runtime = core, xm, xr
    for name, module in (("torch_xla", root), ("torch_xla.core", core),
                         ("torch_xla.core.xla_model", xm), ("torch_xla.runtime", xr)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_missing_torch_xla_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_xla", None)  # import torch_xla -> ImportError
    devices, why = _xla_devices(VERSIONS)
    assert devices == [] and "not installed" in why and "optional" in why


def test_tpu_devices_carry_generation_memory_and_versions(monkeypatch):
    _install(monkeypatch)
    devices, why = _xla_devices(VERSIONS)
    assert why == ""
    assert [d.ref for d in devices] == ["torch:xla:0", "torch:xla:1"]
    first = devices[0]
    assert first.kind == "tpu" and first.name == "TPU v4" and first.platform == "xla"
    assert first.memory_bytes == 32 * 2**30
    assert ("torch_xla", "2.8.0") in first.versions
    assert dict(first.details)["pjrt_device"] == "TPU"


@pytest.mark.parametrize(("pjrt", "kind"), [("CUDA", "gpu"), ("CPU", "cpu"), ("NEURON", "other")])
def test_pjrt_device_types_map_to_kinds(monkeypatch, pjrt, kind):
    _install(monkeypatch, pjrt=pjrt, devices=("xla:0",))
    devices, _ = _xla_devices(VERSIONS)
    assert devices[0].kind == kind


def test_older_memory_info_in_kilobytes_is_read(monkeypatch):
    _install(monkeypatch, memory={"kb_free": 1, "kb_total": 16 * 2**20})
    devices, _ = _xla_devices(VERSIONS)
    assert devices[0].memory_bytes == 16 * 2**30


def test_runtime_failure_keeps_the_reason(monkeypatch):
    _install(monkeypatch, fail="TPU in use by another process")
    devices, why = _xla_devices(VERSIONS)
    assert devices == [] and "TPU in use by another process" in why


def test_no_devices_says_which_pjrt_device_was_tried(monkeypatch):
    _install(monkeypatch, devices=(), pjrt=None)
    devices, why = _xla_devices(VERSIONS)
    assert devices == [] and "PJRT_DEVICE=unset" in why


def test_xla_fence_launches_the_lazy_graph_then_waits_for_the_device(monkeypatch):
    calls = _install(monkeypatch)
    sync = _synchronizer(torch, torch.device("xla", 0))
    sync()
    assert calls == ["sync", "wait_device_ops"]


def test_xla_fence_falls_back_to_mark_step_before_torch_xla_sync_existed(monkeypatch):
    calls = _install(monkeypatch, with_sync=False)
    _synchronizer(torch, torch.device("xla", 0))()
    assert calls == ["mark_step", "wait_device_ops"]
