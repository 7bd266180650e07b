"""Bring-your-own-model loading on real torch: safe formats round-trip, pickles are refused."""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest

from chipfit.errors import InvalidInputError, UnsafeFileError
from chipfit.execute.job import run_job
from chipfit.spec import DeviceRef, Job, TimingConfig
from chipfit.workloads import register
from chipfit.workloads.user import UserWorkload, check_inputs, load_model, parse_input

torch = pytest.importorskip("torch")
FAST = TimingConfig(warmup_s=0.01, min_block_s=0.002, budget_s=0.3, target_rel_ci=0.1)


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch

        def mlp():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 4))

        def mlp_with_inputs():
            return mlp(), (torch.randn(2, 16),)

        def not_a_model():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    sys.modules.pop("my_models", None)


def _same_outputs(a, b):
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-6)


def test_torchscript_round_trip(tmp_path):
    model = _mlp()
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    loaded = load_model(str(path), inputs=("1x16",))
    assert loaded.origin == "torchscript"
    _same_outputs(model, loaded.module)


def test_export_round_trip_keeps_example_inputs(tmp_path):
    model = _mlp().eval()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(5, 16),)), str(path))
    loaded = load_model(str(path))
    assert loaded.origin == "export" and loaded.static_batch == 5
    assert str(loaded.inputs[0]) == "5x16:float32"
    x = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.module(x), atol=1e-6)
    with pytest.raises(InvalidInputError, match="exported for batch 5"):
        UserWorkload(loaded).parse_size("8")


def test_factory_and_safetensors_round_trip(tmp_path, factory_module):
    from safetensors.torch import save_file

    trained = _mlp()
    with torch.no_grad():
        trained[0].weight.add_(1.0)  # differs from what the factory builds
    weights = tmp_path / "w.safetensors"
    save_file(trained.state_dict(), str(weights))
    loaded = load_model(f"{factory_module}:mlp", weights=str(weights), inputs=("1x16",))
    assert loaded.origin == "factory" and loaded.name == f"{factory_module}.mlp"
    _same_outputs(trained, loaded.module)
    with_inputs = load_model(f"{factory_module}:mlp_with_inputs")
    assert str(with_inputs.inputs[0]) == "2x16:float32"
    with pytest.raises(InvalidInputError, match="not a torch module"):
        load_model(f"{factory_module}:not_a_model", inputs=("1x16",))
    with pytest.raises(InvalidInputError, match="has no callable"):
        load_model(f"{factory_module}:missing", inputs=("1x16",))


class _Evil:
    def __reduce__(self):
        import builtins

        return (builtins.exec, ("open(__import__('os').environ['CHIPFIT_MARKER'], 'w').write('ran')",))


def test_a_pickle_that_runs_code_is_refused_and_its_code_does_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("CHIPFIT_MARKER", str(marker))
    for path in (tmp_path / "evil.pt", tmp_path / "evil.pkl"):
        if path.suffix == ".pt":
            torch.save(_Evil(), str(path))
        else:
            path.write_bytes(pickle.dumps(_Evil()))
        with pytest.raises(UnsafeFileError, match="--trust-pickle"):
            load_model(str(path), inputs=("1x16",))
        assert not marker.exists()


def test_full_pickle_of_a_model_needs_trust(tmp_path):
    model = _mlp()
    path = tmp_path / "model.pth"
    torch.save(model, str(path))
    with pytest.raises(UnsafeFileError, match="runs whatever code"):
        load_model(str(path), inputs=("1x16",))
    loaded = load_model(str(path), inputs=("1x16",), trust_pickle=True)
    assert loaded.origin == "pickle"
    _same_outputs(model, loaded.module)


def test_a_state_dict_file_asks_for_the_factory(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(_mlp().state_dict(), str(path))
    with pytest.raises(InvalidInputError, match="--factory"):
        load_model(str(path), inputs=("1x16",))


def test_wrong_input_shape_names_what_the_model_expects(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(_mlp()), str(path))
    loaded = load_model(str(path), inputs=("1x3x224x224",))
    with pytest.raises(InvalidInputError, match="expects a last dimension of 16 features"):
        check_inputs(loaded)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten())
    cpath = tmp_path / "conv.pt"
    torch.jit.save(torch.jit.script(conv), str(cpath))
    with pytest.raises(InvalidInputError, match="3 input channels"):
        check_inputs(load_model(str(cpath), inputs=("1x1x28x28",)))


def test_input_spec_parsing():
    assert parse_input("1x3x224x224:float32").shape == (1, 3, 224, 224)
    assert parse_input("4x128:int64").make(2).dtype == torch.int64
    with pytest.raises(InvalidInputError, match="malformed --input"):
        parse_input("1by3")


@pytest.mark.parametrize("mode", ["inference", "train", "finetune"])
def test_user_model_measures_in_every_mode(tmp_path, mode):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(_mlp()), str(path))
    workload = UserWorkload(load_model(str(path), inputs=("1x16",), name=f"user-ts-{mode}"))
    register(workload)
    m = run_job(Job(workload.name, "4", DeviceRef.parse("torch:cpu"), mode=mode, timing=FAST))
    assert m.ok, m.note
    assert m.items_per_call == 4 and m.flops > 0
    assert int(m.meta["params"]) == 16 * 32 + 32 + 32 * 4 + 4


def test_each_probe_sees_the_callers_directory_environment_and_path_of_now(tmp_path, monkeypatch):
    """The probe's children come from a fork server started at the first probe; what the
    caller changed since (working directory, environment, sys.path) still reaches each one."""
    from chipfit.execute.probe import probe_model

    first, second = tmp_path / "first", tmp_path / "second"
    for where in (first, second):
        where.mkdir()
        (where / "here.py").write_text(textwrap.dedent(f"""
            import os
            import torch

            def build():
                want = {where.name!r}
                got = os.environ.get("CHIPFIT_PROBE_MARK")
                if got != want:
                    raise RuntimeError(f"environment {{got}}, not {{want}}")
                return torch.nn.Linear(16, 4)
        """))
    monkeypatch.chdir(first)
    monkeypatch.setenv("CHIPFIT_PROBE_MARK", "first")
    probe_model("here.py:build", ("1x16",))  # a relative path, read in the child's cwd
    monkeypatch.chdir(second)
    monkeypatch.setenv("CHIPFIT_PROBE_MARK", "second")
    probe_model("here.py:build", ("1x16",))
    monkeypatch.setenv("CHIPFIT_PROBE_MARK", "neither")
    with pytest.raises(InvalidInputError, match="environment neither, not second"):
        probe_model("here.py:build", ("1x16",))
    monkeypatch.syspath_prepend(str(first))  # a module found on sys.path as it is now
    monkeypatch.setenv("CHIPFIT_PROBE_MARK", "first")
    (first / "found_on_path.py").write_text((first / "here.py").read_text())
    probe_model("found_on_path:build", ("1x16",))
