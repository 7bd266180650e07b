"""Loading user models: the controls that give the corpus its meaning.

The payloads are live (trusting a file runs them), the scanner lets real torch files through,
and the notes and limits that loading adds say what they should. Real torch, in-process.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from tests.hostile._support import Payload, build_material

from chipfit.errors import InvalidInputError, OutOfMemoryError, UnsafeFileError
from chipfit.execute.probe import host_memory_limit
from chipfit.workloads.pickles import (
    allowed_globals,
    check_model_file,
    scan_file,
    surely_forbidden,
)
from chipfit.workloads.user import check_inputs, load_model, parse_input


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory):
    """A private copy of the material whose marker these tests may trip on purpose."""
    root = tmp_path_factory.mktemp("live-material")
    return build_material(root / "files", root / "LIVE_PAYLOAD_RAN")


@pytest.mark.parametrize("name", ["evil_inputs.pt2", "evil_inputs_renamed.pt", "evil_weights.pt2",
                                  "evil_torchsave.pt", "evil_proto0.pt", "evil_stack_global.pth"])
def test_each_payload_is_live_when_trusted_and_inert_when_not(own, name: str) -> None:
    """Without trust: refused, nothing runs. With --trust-pickle: the loader runs the payload
    (so the refusal above is what kept it from running, not a dud payload)."""
    own.marker.unlink(missing_ok=True)
    with pytest.raises(UnsafeFileError, match="trust"):
        load_model(str(own.path(name)), inputs=("1x16",))
    assert not own.marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the payload returns None, not a model
        load_model(str(own.path(name)), inputs=("1x16",), trust_pickle=True)
    assert own.marker.read_text() == "payload ran"
    own.marker.unlink()


def test_a_module_name_fetched_back_from_the_memo_is_still_read() -> None:
    """Protocol 4 memoises strings: a second class from the same module names its module by
    BINGET. torch.export archives do this depending on the order dicts come out in (a flake
    that refused a real .pt2 now and then); the scanner follows the memo as unpickling does."""
    import collections
    import io

    from chipfit.workloads.pickles import PickleFinding, scan_pickle

    data = pickle.dumps([collections.OrderedDict, collections.Counter], protocol=4)
    assert b"h\x01" in data  # BINGET 1: 'collections' again
    found = PickleFinding()
    assert scan_pickle(io.BytesIO(data), found)
    assert found.globals == {"collections.OrderedDict", "collections.Counter"}
    assert not found.unverifiable
    # a memoised object built by a call (a str, for all the scan knows) gives no name: refused
    odd = (b"\x80\x04ccollections\nOrderedDict\n)R\x94\x8c\x02os\x94h\x01h\x00\x93.")
    found = PickleFinding()
    scan_pickle(io.BytesIO(odd), found)
    assert found.unverifiable == ["STACK_GLOBAL with a computed name"]
    # one surely not a string (a tuple) fails in the unpickler too: nothing after it runs
    found = PickleFinding()
    assert not scan_pickle(io.BytesIO(b"\x80\x04)\x94\x8c\x02os\x94h\x01h\x00\x93cos\nsystem\n."),
                           found)
    assert not found.unverifiable and not found.globals


def test_extension_codes_are_checked_as_the_globals_they_name(tmp_path: Path) -> None:
    """A library may register copyreg extension codes; pickles written in that process then
    name classes by number (EXT1/2/4). The scanner resolves a code as loading here would."""
    import collections
    import copyreg
    import os

    state = tmp_path / "state.pt"
    evil = tmp_path / "evil.pkl"
    copyreg.add_extension("collections", "OrderedDict", 240)
    copyreg.add_extension(os.system.__module__, "system", 241)  # posix.system
    try:
        torch.save(torch.nn.Linear(4, 2).state_dict(), str(state))
        with zipfile.ZipFile(state) as z:
            body = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        assert b"\x82\xf0" in body  # EXT1 240: OrderedDict named by its code
        check_model_file(state)  # resolved to collections.OrderedDict: allowed
        evil.write_bytes(pickle.dumps((os.system, collections.OrderedDict()), protocol=2))
        assert b"\x82\xf1" in evil.read_bytes()  # EXT1 241
        with pytest.raises(UnsafeFileError, match=r"\.system\)"):
            check_model_file(evil)
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 240)
        copyreg.remove_extension(os.system.__module__, "system", 241)
    with pytest.raises(UnsafeFileError, match="not registered in this process"):
        check_model_file(evil)  # unknown here: loading would fail, the scanner cannot say


def test_tensor_bytes_are_not_read_as_opcodes(tmp_path: Path) -> None:
    """torch reads storages as raw bytes; scanned as opcodes, random weights named extension
    codes or computed globals and refused 21 of 300 small state dicts (a flake in this file)."""
    from chipfit.workloads.pickles import raw_payloads

    for seed in range(60):  # seeds 6, 8, 35 and 55 were refused (EXT1, EXT4)
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 4))
        path = tmp_path / f"s{seed}.pt"
        torch.save(model.state_dict(), path)
        check_model_file(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(raw_payloads(zf)) == [f"s59/data/{i}" for i in range(4)]
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.ts"))
    check_model_file(tmp_path / "m.ts", torchscript=True)
    torch.export.save(torch.export.export(model, (torch.randn(2, 16),)), tmp_path / "m.pt2")
    check_model_file(tmp_path / "m.pt2")
    with zipfile.ZipFile(tmp_path / "m.pt2") as zf:
        assert sorted(raw_payloads(zf)) == [f"m/data/weights/weight_{i}" for i in range(4)]


@pytest.mark.parametrize("how", ["marked-pickled-once-more", "flag-missing", "config-garbled",
                                 "config-half-read"])
def test_a_pt2_payload_not_surely_raw_is_scanned(own, tmp_path: Path, how: str) -> None:
    """A weight file is skipped only when every config entry naming it says use_pickle:
    false; otherwise it is scanned like any member (here: a plain protocol-2 pickle)."""
    import json
    import os

    from tests.hostile._support import _rewrite_zip

    with zipfile.ZipFile(own.good_pt2) as zf:
        cfg_name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        cfg = json.loads(zf.read(cfg_name))
    first = next(iter(cfg["config"].values()))
    if how == "marked-pickled-once-more":
        cfg["config"]["alias"] = {**first, "use_pickle": True}
    elif how == "flag-missing":
        del first["use_pickle"]
    elif how == "config-half-read":  # an entry torch could not read either, after good ones
        cfg["config"]["zz-broken"] = {"use_pickle": False}
    body = b"{not json" if how == "config-garbled" else json.dumps(cfg).encode()
    evil = tmp_path / "evil.pt2"
    _rewrite_zip(own.good_pt2, evil, {cfg_name.split("/", 1)[1]: body,
                                      f"data/weights/{first['path_name']}":
                                      pickle.dumps(os.system, protocol=2)})
    with pytest.raises(UnsafeFileError, match=r"\.system"):
        check_model_file(evil)


def test_real_torch_files_pass_the_scanner(own) -> None:
    for path, torchscript in ((own.good_pt2, False), (own.good_ts, True)):
        check_model_file(path, torchscript=torchscript)
    state = own.root / "state.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), str(state))
    check_model_file(state)
    exported = load_model(str(own.good_pt2))
    assert exported.origin == "export" and exported.inputs[0].shape == (1, 16)
    check_inputs(exported)
    assert load_model(str(own.good_ts), inputs=("2x16",)).origin == "torchscript"


def test_the_fast_refusal_agrees_with_torchs_allow_list() -> None:
    """Globals refused without importing torch are outside the installed torch's list."""
    allowed = allowed_globals()
    assert allowed and not [g for g in allowed if surely_forbidden(g)]
    assert surely_forbidden("builtins.exec") and surely_forbidden("os.system")
    assert surely_forbidden("posix.system") and not surely_forbidden("torch._utils.anything")


def test_the_scanner_names_the_global_it_refuses(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload(tmp_path / "never"), protocol=4))
    assert "builtins.exec" in scan_file(path).globals
    with pytest.raises(UnsafeFileError, match="builtins.exec"):
        check_model_file(path)
    assert not (tmp_path / "never").exists()


def test_a_zip_bomb_of_nested_archives_is_refused_not_followed(tmp_path: Path) -> None:
    inner = b"not a pickle"
    for depth in range(5):
        path = tmp_path / f"level{depth}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.bin", inner)
        inner = path.read_bytes()
    with pytest.raises(UnsafeFileError, match="nested deeper"):
        check_model_file(path)


def test_weights_of_another_dtype_are_converted_and_said(own) -> None:
    model = load_model(f"{own.path('factories.py')}:mlp", inputs=("1x16",),
                       weights=str(own.path("half.safetensors")))
    assert model.notes and "float16 -> float32" in model.notes[0]
    plain = load_model(f"{own.path('factories.py')}:mlp", inputs=("1x16",),
                       weights=str(own.path("good.safetensors")))
    assert plain.notes == ()


def test_inputs_over_the_memory_limit_are_refused_before_allocating(monkeypatch, own) -> None:
    monkeypatch.setenv("CHIPFIT_MEMORY_LIMIT_BYTES", "64Mi")
    model = load_model(f"{own.path('factories.py')}:mlp", inputs=("1x16",))
    big = model.__class__(**{**model.__dict__, "inputs": (parse_input("1x100000000"),)})
    with pytest.raises(InvalidInputError, match="more than the"):
        check_inputs(big, memory_limit=host_memory_limit())  # 400 MB: refused, never allocated


def test_a_forward_that_runs_out_of_memory_does_not_fit(monkeypatch, own) -> None:
    monkeypatch.setenv("HUNGRY_BYTES", str(2**56))  # no machine has it, so none allocates it
    model = load_model(f"{own.path('factories.py')}:hungry", inputs=("1x16",))
    with pytest.raises(OutOfMemoryError, match="does not fit"):
        check_inputs(model)
