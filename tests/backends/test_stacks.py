"""Software stacks end to end on real torch and ONNX Runtime on the CPU.

Correctness only (status, agreement with eager, recorded fields); never speed. Models are the
small built-in nets at batch 2 so export and compile stay within seconds.
"""

from __future__ import annotations

import json

import pytest

from chipfit.execute.job import run_job
from chipfit.spec import DeviceRef, Job, TimingConfig

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FAST = TimingConfig(warmup_s=0.0, warmup_min_calls=1, min_block_s=0.001, min_samples=3,
                    max_samples=5, budget_s=0.05, target_rel_ci=0.5)
CPU = DeviceRef("torch", "cpu")


def _job(workload: str, stack: str, size: str = "2", dtype: str = "float32") -> Job:
    return Job(workload, size, CPU, dtype, "inference", FAST, stack=stack)


@pytest.mark.parametrize("stack, tolerance", [("onnxruntime", 1e-4), ("int8", 0.1),
                                              ("int8-torch", 0.1)])
def test_stack_measures_and_agrees_with_eager(stack, tolerance):
    m = run_job(_job("cnn", stack))
    assert m.status == "ok", m.note
    assert m.stack == stack and m.block_times_s
    assert m.compile_s is not None and m.compile_s > 0
    assert m.max_abs_diff is not None and m.max_rel_diff is not None
    assert 0 <= m.max_rel_diff < tolerance
    meta = m.meta
    assert meta["stack"]
    if stack != "int8-torch":
        assert "CPUExecutionProvider" in meta["providers"]
        assert "dynamo=True" in meta["exporter"]


def test_static_int8_is_labelled_as_calibrated_on_random_inputs():
    m = run_job(_job("mlp", "int8-static"))
    assert m.status == "ok", m.note
    assert "random inputs" in m.meta["quantization"]
    assert m.max_rel_diff is not None and m.max_rel_diff >= 0


@pytest.mark.slow
def test_torch_compile_stack_agrees_with_eager():
    m = run_job(_job("mlp", "compile"))
    assert m.status == "ok", m.note
    assert m.max_rel_diff is not None and m.max_rel_diff < 1e-4
    assert "inductor" in m.meta["compiler"]


def test_reduced_dtype_on_onnxruntime_is_unsupported_not_an_error():
    m = run_job(_job("mlp", "onnxruntime", dtype="bfloat16"))
    assert m.status == "unsupported"
    assert "float32" in m.note


def test_training_on_a_stack_is_unsupported():
    job = Job("mlp", "2", CPU, "float32", "train", FAST, stack="onnxruntime")
    m = run_job(job)
    assert m.status == "unsupported" and "inference only" in m.note


@pytest.fixture
def custom_op_workload():
    """A user model with a custom operator that has no ONNX translation."""
    from chipfit.workloads import register
    from chipfit.workloads.user import UserModel, UserWorkload, parse_input

    @torch.library.custom_op("chipfit_test::twice", mutates_args=())
    def twice(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @twice.register_fake
    def _(x):
        return torch.empty_like(x)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 4)

        def forward(self, x):
            return twice(self.lin(x))

    workload = UserWorkload(UserModel("custom-op-net", Net().eval(),
                                      (parse_input("1x8:float32"),), "module"))
    register(workload)
    return workload.name


def test_failed_export_is_recorded_and_the_suite_goes_on(custom_op_workload, tmp_path):
    from chipfit.pipelines.bench import bench
    from chipfit.store.runs import load_run, save_run

    run = bench([custom_op_workload, "mlp"], ["torch:cpu"], sizes=["2"],
                stacks=["eager", "onnxruntime"], timing=FAST)
    found = {(m.workload, m.stack): m for m in run.measurements}
    failed = found[(custom_op_workload, "onnxruntime")]
    assert failed.status == "unsupported"
    assert "ONNX export failed" in failed.note
    assert found[(custom_op_workload, "eager")].ok
    assert found[("mlp", "onnxruntime")].ok  # the suite went on past the failure
    path = save_run(run, tmp_path / "run.json")
    again = load_run(path)
    assert [(m.workload, m.stack, m.status) for m in again.measurements] == [
        (m.workload, m.stack, m.status) for m in run.measurements]
    data = json.loads(path.read_text())
    assert data["schema_version"] >= 2
    assert {m["stack"] for m in data["measurements"]} == {"eager", "onnxruntime"}


def test_stacks_are_kept_in_the_store_and_resumable(tmp_path):
    from chipfit.pipelines.bench import plan
    from chipfit.store.sqlite import open_store

    jobs = plan(["mlp"], [CPU], sizes=["2"], stacks=["eager", "int8-torch"], timing=FAST)
    assert [j.stack for j in jobs] == ["eager", "int8-torch"]
    assert jobs[0].key == ("mlp", "2", "torch:cpu", "float32", "inference")
    assert jobs[1].key[-1] == "int8-torch"
    with open_store(tmp_path / "db.sqlite3") as store:
        from chipfit.backends import get_backend
        from chipfit.pipelines.bench import new_run, run_jobs

        run = new_run("bench", get_backend("torch").discover(), {})
        store.begin_run(run, jobs)
        run_jobs(jobs[1:], run, store=store)
        assert store.done_keys(run.run_id) == {jobs[1].key}
        assert [j.stack for j in store.planned_jobs(run.run_id)] == ["eager", "int8-torch"]
        loaded = store.load_run(run.run_id)
        assert loaded.measurements[0].stack == "int8-torch"
        assert loaded.measurements[0].max_rel_diff is not None


def test_int8_reuses_the_export_of_the_same_job_and_agrees_with_a_fresh_one():
    first = run_job(_job("mlp", "onnxruntime", size="3"))
    second = run_job(_job("mlp", "int8", size="3"))
    assert first.ok and second.ok
    assert "reused" in second.meta["exporter"] and "reused" not in first.meta["exporter"]
    other = run_job(_job("mlp", "int8", size="4"))  # another size: exported afresh
    assert "reused" not in other.meta["exporter"]
    assert second.max_rel_diff < 0.1 and other.max_rel_diff < 0.1


def test_jax_devices_are_measured_once_as_jit():
    pytest.importorskip("jax")
    import chipfit

    run = chipfit.bench(["mlp"], ["jax:cpu:0", "torch:cpu"], sizes=["2"],
                        stacks=["eager", "int8-torch"], timing=FAST)
    assert sorted((m.device, m.stack, m.status) for m in run.measurements) == [
        ("jax:cpu:0", "jit", "ok"), ("torch:cpu", "eager", "ok"), ("torch:cpu", "int8-torch", "ok")]
