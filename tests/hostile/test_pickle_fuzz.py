"""Code execution through a model file, closed as a class.

Two walls, each tested on its own. The loader (``load_model``) never unpickles with more than
torch's weights-only unpickler unless the user passed ``--trust-pickle``, so a pickle that the
scanner misreads still cannot run (tested with the scanner switched off). The scanner
(:mod:`chipfit.workloads.pickles`) follows the stack and memo exactly as the real unpickler
does, checked here against the real unpickler itself on generated opcode streams. And whole
archives, mangled at random, are refused in one line or loaded, never executed.

Every payload writes a marker file; each one is shown live (it runs when trusted), so an absent
marker means chipfit refused it, not that the payload was a dud.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli
from tests.hostile._support import Payload, _rewrite_zip, assert_refused, torch_save_bytes

import chipfit
from chipfit.errors import InvalidInputError, UnsafeFileError
from chipfit.workloads import pickles
from chipfit.workloads.pickles import PickleFinding, allowed_globals, refusal, scan_pickle
from chipfit.workloads.user import load_model


# ---- pickles the old opcode scanner misread --------------------------------------------------
def _u(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _exec_line(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('payload ran')"


def memo_confusion(marker: Path) -> bytes:
    """MEMOIZE stores at len(memo), not past the highest index: after ``BINPUT 1`` the next
    MEMOIZE overwrites slot 1. A scanner that counted past the highest index still sees
    'collections'/'OrderedDict' in slots 1 and 2; the unpickler finds 'builtins'/'exec'."""
    return (b"\x80\x04" + _u("collections") + b"q\x01" + b"0"    # memo {1: collections}
            + _u("builtins") + b"\x94" + b"0"                     # len 1: slot 1 := builtins
            + _u("OrderedDict") + b"q\x02" + b"0"                 # {1: builtins, 2: OrderedDict}
            + _u("exec") + b"\x94" + b"0"                         # len 2: slot 2 := exec
            + b"h\x01h\x02\x93" + _u(_exec_line(marker)) + b"\x85R.")


def int_base_zero(marker: Path) -> bytes:
    """``I0x10``: the unpickler parses INT with base 0; pickletools' parser (base 10) gave up
    there, and the old scanner took the rest for 'not a pickle'."""
    return (b"\x80\x02I0x10\n0cbuiltins\nexec\n" + b"X" + struct.pack("<I", len(_exec_line(marker)))
            + _exec_line(marker).encode() + b"\x85R.")


def non_ascii_string(marker: Path) -> bytes:
    """A protocol-0 STRING holding UTF-8: torch decodes it, pickletools refused it as
    non-ASCII and the old scanner stopped reading there."""
    return b"S'\xc3\xa9'\n0cbuiltins\nexec\n(V" + _exec_line(marker).encode() + b"\ntR."


def dup_below_mark(marker: Path) -> bytes:
    """Names kept on the stack under a MARK and reached again after POP_MARK."""
    return (b"\x80\x04" + _u("builtins") + _u("exec") + b"(" + _u("collections")
            + _u("OrderedDict") + b"1\x93" + _u(_exec_line(marker)) + b"\x85R.")


TRICKS = {"memo": memo_confusion, "int-base-0": int_base_zero, "non-ascii": non_ascii_string,
          "mark": dup_below_mark}


def _zip_with_data_pkl(data: bytes) -> bytes:
    """A torch.save archive whose pickle is ``data`` (how a .pt2 stores its pickled members)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(torch_save_bytes({"a": 1}))) as zin, \
            zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, data if info.filename.endswith("/data.pkl") else zin.read(info))
    return buf.getvalue()


@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_each_trick_is_live_and_the_scanner_refuses_it(tmp_path: Path, trick: str) -> None:
    marker = tmp_path / "ran"
    data = TRICKS[trick](marker)
    finding = PickleFinding()
    scan_pickle(io.BytesIO(data), finding)
    assert refusal(finding) is not None, finding.globals
    assert not marker.exists()
    pickle.loads(data, encoding="utf-8")  # the real unpickler, as torch.load sets it: live
    assert marker.read_text() == "payload ran"


# ---- hostile archives ------------------------------------------------------------------------
@pytest.fixture
def good_pt2(material) -> Path:
    """A real torch.export.save of a small MLP taking 1x16 (the hostile suite's own)."""
    return material.good_pt2


def _config(good: Path, kind: str) -> tuple[str, dict]:
    with zipfile.ZipFile(good) as zf:
        name = next(n for n in zf.namelist() if n.endswith(f"model_{kind}_config.json"))
        return name.split("/", 1)[1], json.loads(zf.read(name))


def hostile_pt2(good: Path, dst: Path, where: str, payload: bytes) -> Path:
    """``good`` with ``payload`` (a torch.save archive or a raw pickle) where a loader reads it."""
    if where == "sample-inputs":
        _rewrite_zip(good, dst, {"data/sample_inputs/model.pt": payload})
    elif where == "pickled-weight":
        name, cfg = _config(good, "weights")
        first = next(iter(cfg["config"].values()))
        first["use_pickle"] = True
        _rewrite_zip(good, dst, {name: json.dumps(cfg).encode(),
                                 f"data/weights/{first['path_name']}": payload})
    elif where == "legacy-weights":
        _rewrite_zip(good, dst, {}, {"data/weights/model.pt": payload})
    else:  # a constant: pickled tensor, TorchScript object, opaque Python object
        prefix = {"pickled-constant": "tensor_", "script-object": "custom_obj_",
                  "opaque-object": "opaque_obj_"}[where]
        name, cfg = _config(good, "constants")
        cfg["config"]["c"] = {"path_name": f"{prefix}0", "is_param": False, "use_pickle": True,
                              "tensor_meta": None}
        _rewrite_zip(good, dst, {name: json.dumps(cfg).encode()},
                     {f"data/constants/{prefix}0": payload})
    return dst


@pytest.mark.parametrize("where", ["sample-inputs", "pickled-weight"])
@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_a_pt2_with_a_scanner_trick_is_refused_and_inert(good_pt2: Path, tmp_path: Path,
                                                        trick: str, where: str) -> None:
    marker = tmp_path / "ran"
    evil = hostile_pt2(good_pt2, tmp_path / "evil.pt2", where,
                       _zip_with_data_pkl(TRICKS[trick](marker)))
    with pytest.raises(UnsafeFileError, match="--trust-pickle") as refused:
        load_model(str(evil), inputs=("1x16",))
    assert "\n" not in str(refused.value)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - trusted, the loader runs the payload
        load_model(str(evil), inputs=("1x16",), trust_pickle=True)
    assert marker.read_text() == "payload ran"


@pytest.fixture
def scanner_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the scanner missed everything: what the loader alone does."""
    monkeypatch.setattr(pickles, "check_model_file", lambda *a, **k: None)


WHERE = ["sample-inputs", "pickled-weight", "legacy-weights", "pickled-constant", "opaque-object",
         "script-object"]


@pytest.mark.parametrize("where", WHERE)
def test_the_loader_alone_never_unpickles_fully(good_pt2: Path, tmp_path: Path, scanner_off,
                                                where: str) -> None:
    """With the scanner switched off, every pickled member of a .pt2 is refused in one line
    naming --trust-pickle; trusted, the same file runs its payload (where the member is
    unpickled by Python: a TorchScript object goes through torch's own C++ unpickler)."""
    marker = tmp_path / "ran"
    payload = Payload(marker)
    data = (pickle.dumps(payload, protocol=2) if where in ("opaque-object", "script-object")
            else torch_save_bytes(payload))
    evil = hostile_pt2(good_pt2, tmp_path / "evil.pt2", where, data)
    with pytest.raises(UnsafeFileError, match="--trust-pickle") as refused:
        load_model(str(evil), inputs=("1x16",))
    assert "\n" not in str(refused.value)
    assert not marker.exists()
    if where != "script-object":
        with pytest.raises(Exception):  # noqa: B017 - trusted: the payload runs, then fails
            load_model(str(evil), inputs=("1x16",), trust_pickle=True)
        assert marker.read_text() == "payload ran"


def test_an_environment_forcing_full_unpickling_changes_nothing(good_pt2: Path, tmp_path: Path,
                                                                scanner_off,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (in the user's environment) is set aside while
    an archive loads, and put back."""
    import os

    marker = tmp_path / "ran"
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    evil = hostile_pt2(good_pt2, tmp_path / "evil.pt2", "sample-inputs",
                       torch_save_bytes(Payload(marker)))
    with pytest.raises(UnsafeFileError, match="--trust-pickle"):
        load_model(str(evil), inputs=("1x16",))
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_a_torch_whose_loader_the_guard_does_not_know_is_refused(good_pt2: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard fails closed: where torch's export loader no longer has a name it patches,
    that loader may reach the same code another way."""
    from torch.export.pt2_archive import _package

    monkeypatch.delattr(_package, "_load_aoti")
    with pytest.raises(UnsafeFileError, match="cannot guard"):
        load_model(str(good_pt2))
    monkeypatch.undo()
    assert load_model(str(good_pt2)).origin == "export"


def test_the_loader_alone_keeps_good_archives_loading(good_pt2: Path, scanner_off) -> None:
    import os

    import sympy
    import torch.fx.graph_module as fx_module
    from torch._export.serde import serialize
    from torch.export.pt2_archive import _package

    patched = (fx_module._exec_with_source, torch._C._pickle_load_obj, _package._load_aoti)
    model = load_model(str(good_pt2))
    assert model.origin == "export" and model.inputs[0].shape == (1, 16)
    # the guard put everything back
    assert (fx_module._exec_with_source, torch._C._pickle_load_obj, _package._load_aoti) == patched
    assert _package.pickle is pickle and serialize.sympy is sympy
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def _aoti_pt2(good: Path, dst: Path, library: bytes) -> Path:
    """An AOTInductor package inside a .pt2: torch.export.load dlopen()s its library."""
    _rewrite_zip(good, dst, {}, {
        "data/aotinductor/model/model.wrapper.so": library,
        "data/aotinductor/model/model.wrapper_metadata.json": b'{"AOTI_DEVICE_KEY": "cpu"}'})
    return dst


def test_compiled_code_in_a_pt2_is_never_loaded(good_pt2: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared library is code that dlopen() runs (its constructors) before anything could
    inspect it; chipfit never uses the compiled package, so it refuses the file."""
    marker = tmp_path / "ran"
    library = b"\x7fELF not really"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:  # a real library whose constructor writes the marker
        src = tmp_path / "ctor.c"
        src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void boom(void)'
                       f' {{ FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("payload ran", f);'
                       ' fclose(f); } }\n')
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / "ctor.so"), str(src)],
                       check=True, capture_output=True)
        library = (tmp_path / "ctor.so").read_bytes()
    evil = _aoti_pt2(good_pt2, tmp_path / "aoti.pt2", library)
    for scanner in ("on", "off"):
        with pytest.MonkeyPatch.context() as patch:
            if scanner == "off":  # the loader alone
                patch.setattr(pickles, "check_model_file", lambda *a, **k: None)
            with pytest.raises(UnsafeFileError, match="--trust-pickle") as refused:
                load_model(str(evil), inputs=("1x16",))
        assert "compiled" in str(refused.value) and not marker.exists()
    if compiler:  # what torch.export.load calls for each package it finds: it runs the library
        monkeypatch.setenv("TMPDIR", str(tmp_path))  # where torch unpacks it
        with pytest.raises(RuntimeError, match="dlopen"):
            torch._C._aoti.AOTIModelPackageLoader(str(evil), "model", False, 1, -1)
        assert marker.read_text() == "payload ran"


def test_a_graph_calling_python_is_refused(good_pt2: Path, tmp_path: Path) -> None:
    """A node whose target is reached from ``torch`` by attributes (``torch.os.system``) is not
    an operator: torch's verifier refuses the program, and chipfit says so in one line."""
    marker = tmp_path / "ran"
    with zipfile.ZipFile(good_pt2) as zf:
        name = next(n for n in zf.namelist() if n.endswith("models/model.json"))
        program = json.loads(zf.read(name))
    program["graph_module"]["graph"]["nodes"].insert(0, {
        "target": "torch.os.system", "name": "boom", "metadata": {}, "outputs": [{"as_none": True}],
        "inputs": [{"name": "command", "arg": {"as_string": f"touch {marker}"}, "kind": 1}]})
    evil = tmp_path / "graph.pt2"
    _rewrite_zip(good_pt2, evil, {"models/model.json": json.dumps(program).encode()})
    with pytest.raises(InvalidInputError, match="not an allowed operator") as refused:
        load_model(str(evil), inputs=("1x16",))
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def _with_symbolic_size(good: Path, dst: Path, expr: str) -> Path:
    """``good`` with its first tensor's first size written as the expression ``expr``."""
    with zipfile.ZipFile(good) as zf:
        name = next(n for n in zf.namelist() if n.endswith("models/model.json"))
        program = json.loads(zf.read(name))
    values = program["graph_module"]["graph"]["tensor_values"]
    first = values[next(iter(values))]
    first["sizes"][0] = {"as_expr": {"expr_str": expr, "hint": {"as_int": first["sizes"][0]["as_int"]}}}
    _rewrite_zip(good, dst, {"models/model.json": json.dumps(program).encode()})
    return dst


def test_a_symbolic_shape_that_is_code_is_refused(good_pt2: Path, tmp_path: Path) -> None:
    """torch.export.load builds symbolic shapes with ``sympy.sympify``, which eval()s its
    string: a .pt2 ran code without any pickle. The guard checks each expression first."""
    marker = tmp_path / "ran"
    evil = _with_symbolic_size(good_pt2, tmp_path / "sym.pt2",
                               f"__import__('pathlib').Path({str(marker)!r}).write_text('payload ran')"
                               " + Symbol('s0', positive=True, integer=True)")
    for scanner in ("on", "off"):
        with pytest.MonkeyPatch.context() as patch:
            if scanner == "off":
                patch.setattr(pickles, "check_model_file", lambda *a, **k: None)
            with pytest.raises(UnsafeFileError, match="symbolic shape that is code") as refused:
                load_model(str(evil), inputs=("1x16",))
        assert "\n" not in str(refused.value) and "--trust-pickle" in str(refused.value)
        assert not marker.exists()
    with contextlib.suppress(Exception):  # trusted, torch evaluates it: the payload is live
        load_model(str(evil), inputs=("1x16",), trust_pickle=True)
    assert marker.read_text() == "payload ran"


def _program(good: Path) -> tuple[str, dict]:
    with zipfile.ZipFile(good) as zf:
        name = next(n for n in zf.namelist() if n.endswith("models/model.json"))
        return name.split("/", 1)[1], json.loads(zf.read(name))


def _with_input_named(good: Path, dst: Path, new_name: str) -> Path:
    """``good`` with its user input (a graph placeholder) renamed ``new_name``."""
    member, program = _program(good)
    specs = program["graph_module"]["signature"]["input_specs"]
    old = next(s["user_input"]["arg"]["as_tensor"]["name"] for s in specs if "user_input" in s)
    text = json.dumps(program).replace(json.dumps({"name": old}), json.dumps({"name": new_name}))
    text = text.replace(f'{json.dumps(old)}: {{"dtype"', f'{json.dumps(new_name)}: {{"dtype"')
    _rewrite_zip(good, dst, {member: text.encode()})
    return dst


def test_a_graph_input_named_with_code_is_refused(good_pt2: Path, tmp_path: Path) -> None:
    """FX writes a placeholder's name into the Python it generates and exec()s, as it is:
    ``x=open(...)`` became a default argument, run as the archive loaded."""
    marker = tmp_path / "ran"
    evil = _with_input_named(good_pt2, tmp_path / "names.pt2",
                             f"x=open({str(marker)!r}, 'w').write('payload ran')")
    for scanner in ("on", "off"):
        with pytest.MonkeyPatch.context() as patch:
            if scanner == "off":
                patch.setattr(pickles, "check_model_file", lambda *a, **k: None)
            with pytest.raises(UnsafeFileError, match="names are code") as refused:
                load_model(str(evil), inputs=("1x16",))
        assert "\n" not in str(refused.value) and "--trust-pickle" in str(refused.value)
        assert not marker.exists()
    with contextlib.suppress(Exception):  # trusted: torch.export.load runs it
        load_model(str(evil), inputs=("1x16",), trust_pickle=True)
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("source", [
    "def forward(self, x):\n    y = torch.relu(x);  x = None\n    return (y,)\n",
    "def forward(self, x):\n    x, = fx_pytree.tree_flatten_spec(([x], {}), self._in_spec)\n"
    "    w = getattr(self, 'odd-name')\n    return pytree.tree_unflatten((w,), self._out_spec)\n"])
def test_code_fx_generates_passes_the_check(source: str) -> None:
    from chipfit.workloads.pickles import _plain_graph_source

    assert _plain_graph_source(source, ["torch", "fx_pytree", "pytree"])


@pytest.mark.parametrize("source", [
    "def forward(self, x=open('f', 'w')):\n    return (x,)\n",
    "def forward(self, x):\n    pass\nopen('f', 'w')\n",
    "def forward(self, x):\n    y = open('f', 'w')\n    return (y,)\n",
    "def forward(self, x):\n    return (self.__class__,)\n",
    "def forward(self, x):\n    return (getattr(self, '__class__'),)\n",
    "def forward(self, x):\n    import os\n    return (x,)\n",
    "def forward(self, x):\n    return ((lambda: x)(),)\n",
    "@torch.jit.ignore\ndef forward(self, x):\n    return (x,)\n",
    "def forward(self, x: exec('1')):\n    return (x,)\n", "def forward(self, x:\n"])
def test_code_beyond_what_fx_generates_is_refused(source: str) -> None:
    from chipfit.workloads.pickles import _plain_graph_source

    assert not _plain_graph_source(source, ["torch"])


def test_a_graph_passing_python_to_an_operator_is_refused() -> None:
    """An argument written as an operator is found by attribute lookups from ``torch``
    (``torch.os.system``); torch's verifier checks node targets, not arguments."""
    import os

    from chipfit.workloads.pickles import _check_graphs, _Refused

    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(torch.ops.aten.add.Tensor, (x, x)))
    _check_graphs(torch.fx.GraphModule(torch.nn.Module(), graph))  # operators only: fine
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(torch.ops.higher_order.cond, (x, os.system, os.system, (x,))))
    holder = torch.nn.Module()  # a graph as deserialized, before FX generates code for it
    holder.graph = graph
    with pytest.raises(_Refused, match="passes system"):
        _check_graphs(holder)


def test_guard_code_stored_in_a_pt2_is_never_compiled(good_pt2: Path, tmp_path: Path) -> None:
    """An archive's ``guards_code`` strings are compiled into the module's input checks as
    they are, and run with the first batch; chipfit builds the module without them."""
    from chipfit.workloads.user import check_inputs

    marker = tmp_path / "ran"
    member, program = _program(good_pt2)
    program["guards_code"] = [f"__import__('pathlib').Path({str(marker)!r}).write_text('payload ran') > 0"]
    evil = tmp_path / "guards.pt2"
    _rewrite_zip(good_pt2, evil, {member: json.dumps(program).encode()})
    check_inputs(load_model(str(evil)))  # loads and runs: the checks come from the graph itself
    assert not marker.exists()
    check_inputs(load_model(str(evil), trust_pickle=True))  # trusted, torch compiles them: live
    assert marker.read_text() == "payload ran"


_S0 = "Symbol('s0', positive=True, integer=True)"


@pytest.mark.parametrize("expr", [
    _S0, f"Add(FloorDiv({_S0}, Integer(2)), Integer(1))", f"Mul(Integer(2), {_S0})",
    f"Pow({_S0}, Integer(-1))", f"Pow({_S0}, Rational(1, 2))", f"Mul(Float('1.5', precision=53), {_S0})",
    f"Equality({_S0}, Integer(2))",
    f"And(StrictGreaterThan({_S0}, Integer(2)), Unequality({_S0}, Integer(5)))",
    f"Piecewise(ExprCondPair({_S0}, StrictGreaterThan({_S0}, Integer(2))), ExprCondPair(Integer(1), true))",
    f"Add(Integer(3), Mul(Integer(-1), {_S0}))", f"Max(Integer(2), {_S0})", "s0 + 1", "2*s0 // 3",
    "Eq(s0, 2) & (s1 <= 5)", "s0**2", "oo", f"ModularIndexing({_S0}, Integer(1), Integer(4))"])
def test_symbolic_shapes_torch_writes_pass_the_check(expr: str) -> None:
    """``sympy.srepr`` as torch.export.save writes them, and ``str`` as older archives did."""
    from chipfit.workloads.pickles import _plain_sym_expr

    assert _plain_sym_expr(expr, ["FloorDiv", "ModularIndexing", "Mod", "PowByNatural", "CeilDiv"])


@pytest.mark.parametrize("expr", [
    "__import__('os').system('x')", "s0.__class__", "eval('1')", "(lambda: 1)()", "s0[0]",
    "Rational(\"__import__('os').system('x')\")", "Symbol('s0', **{'a': 1})", "Max(*[1, 2])",
    "Pow(Integer(2), Integer(10000000000))", "2**10**10", "PowByNatural(Integer(2), Integer(99999))",
    "LShift(Integer(1), Integer(10**18))", "Symbol('x y')", "Float('1e5; import os')", "lambdify('x', 'x')",
    "Function('f')(s0)", "Integer(" + "9" * 30 + ")", "(" * 300 + "s0" + ")" * 300, "s0 if s0 else s0",
    "_private", "Symbol(name='s0')", "[s0]", "{s0}", "f'{s0}'", "s0 := 1"])
def test_symbolic_shapes_beyond_plain_arithmetic_are_refused(expr: str) -> None:
    """Code (builtins, attributes, sympy's own string parsers), work without bound (huge
    exponents and shifts), and anything else outside the grammar torch writes."""
    from chipfit.workloads.pickles import _plain_sym_expr

    assert not _plain_sym_expr(expr, ["FloorDiv", "PowByNatural", "LShift"])


def test_a_real_dynamic_shape_export_loads(tmp_path: Path) -> None:
    """No false refusals of symbolic shapes: a dynamic batch, derived sizes (sums, floor
    division), loaded through the scanner and the guard."""

    class Model(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            z = torch.cat([x, y], 0)
            return z.reshape(-1, 2)[: x.shape[0] // 2 + 1] * 2

    batch, other = torch.export.Dim("batch", min=2, max=1024), torch.export.Dim("other", min=2, max=64)
    program = torch.export.export(Model(), (torch.randn(4, 4), torch.randn(6, 4)),
                                  dynamic_shapes=({0: batch}, {0: other}))
    path = tmp_path / "dynamic.pt2"
    torch.export.save(program, str(path))
    assert b"FloorDiv(" in zipfile.ZipFile(path).read(
        next(n for n in zipfile.ZipFile(path).namelist() if n.endswith("models/model.json")))
    model = load_model(str(path))
    assert model.origin == "export" and [s.shape for s in model.inputs] == [(4, 4), (6, 4)]
    assert model.module(torch.randn(8, 4), torch.randn(2, 4)).shape == (5, 2)


@pytest.mark.parametrize("kind", ["torchscript", "torch-save"])
def test_the_other_loaders_alone_never_unpickle_fully(material, tmp_path: Path, scanner_off,
                                                      kind: str) -> None:
    """TorchScript archives load through torch's C++ unpickler (no Python globals), other files
    through torch.load(weights_only=True): a memo trick in either runs nothing."""
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    if kind == "torchscript":
        _rewrite_zip(material.good_ts, evil, {"/data.pkl": memo_confusion(marker)})
    else:
        evil.write_bytes(_zip_with_data_pkl(memo_confusion(marker)))
    with pytest.raises((InvalidInputError, UnsafeFileError)) as refused:
        load_model(str(evil), inputs=("1x16",))
    assert "\n" not in str(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["sample-inputs", "pickled-weight"])
def test_the_cli_refuses_a_scanner_trick_in_one_line(good_pt2: Path, tmp_path: Path,
                                                    where: str) -> None:
    marker = tmp_path / "payload-ran"
    evil = hostile_pt2(good_pt2, tmp_path / "evil.pt2", where,
                       _zip_with_data_pkl(memo_confusion(marker)))
    assert_refused(run_cli("advise", str(evil)), says="--trust-pickle")
    assert not marker.exists()


def test_the_cli_refuses_a_symbolic_shape_that_is_code_in_one_line(good_pt2: Path,
                                                                  tmp_path: Path) -> None:
    """No pickle for the scanner to see: the probe's loader refuses it, in one line."""
    marker = tmp_path / "payload-ran"
    evil = _with_symbolic_size(good_pt2, tmp_path / "sym.pt2",
                               f"__import__('pathlib').Path({str(marker)!r}).write_text('x')")
    assert_refused(run_cli("advise", str(evil)), says="--trust-pickle")
    assert not marker.exists()


def test_the_cli_refuses_compiled_code_in_one_line(good_pt2: Path, tmp_path: Path) -> None:
    evil = _aoti_pt2(good_pt2, tmp_path / "aoti.pt2", b"\x7fELF not really")
    assert_refused(run_cli("advise", str(evil)), says="--trust-pickle")


def test_predict_reaches_a_model_file_by_a_colon_and_refuses_it(good_pt2: Path,
                                                                tmp_path: Path) -> None:
    """``predict`` takes ``module:function`` factories; a file path with a colon reaches the
    same loader, and is refused the same way."""
    marker = tmp_path / "payload-ran"
    evil = hostile_pt2(good_pt2, tmp_path / "ev:il.pt2", "sample-inputs",
                       _zip_with_data_pkl(memo_confusion(marker)))
    proc = run_cli("predict", str(evil), "--hardware", "h100-sxm")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]  # a progress line first
    assert lines and all(not line.startswith("chipfit: error") for line in lines[:-1]), lines
    assert_refused(subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout,
                                               lines[-1]), says="--trust-pickle")
    assert not marker.exists()


def test_the_python_api_refuses_a_scanner_trick(good_pt2: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    evil = hostile_pt2(good_pt2, tmp_path / "evil.pt2", "pickled-weight",
                       _zip_with_data_pkl(memo_confusion(marker)))
    with pytest.raises(UnsafeFileError, match="--trust-pickle"):
        chipfit.advise(str(evil))
    assert not marker.exists()


# ---- the scanner against the real unpickler --------------------------------------------------
class _Forbidden(Exception):
    """The real unpickler asked for a global outside the allow-list."""


class _Inert:
    """What an allowed global resolves to in the oracle: accepts whatever unpickling does to
    it, runs nothing, so the unpickler goes on to the next global."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Inert:
        return _Inert()

    def __setstate__(self, state: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass


def _allowed(module: str, name: str) -> bool:
    return f"{module}.{name}" in allowed_globals()


def _compat(module: str, name: str) -> tuple[str, str]:
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _ReferenceOracle(pickle._Unpickler):  # type: ignore[name-defined]
    """The reference (pure Python) unpickler: knows the protocol, so maps Python 2 names
    exactly as loading would."""

    def find_class(self, module: str, name: str) -> object:
        if self.proto < 3 and self.fix_imports:
            module, name = _compat(module, name)
        if not _allowed(module, name):
            raise _Forbidden(f"{module}.{name}")
        return _Inert

    def persistent_load(self, pid: object) -> object:
        return _Inert()


class _NativeOracle(pickle.Unpickler):
    """The C unpickler (what torch.load uses). It does not say which protocol it read, so a
    Python 2 name counts as allowed if either spelling is (the reference oracle is exact)."""

    def find_class(self, module: str, name: str) -> object:
        if not (_allowed(module, name) or _allowed(*_compat(module, name))):
            raise _Forbidden(f"{module}.{name}")
        return _Inert

    def persistent_load(self, pid: object) -> object:
        return _Inert()


def _forbidden_global_reached(data: bytes) -> str | None:
    for oracle in (_ReferenceOracle, _NativeOracle):
        try:
            oracle(io.BytesIO(data), encoding="utf-8").load()
        except _Forbidden as exc:
            return f"{oracle.__name__}: {exc}"
        except RecursionError:
            return None
        except Exception:  # noqa: BLE001 - a broken stream: loading stops there
            pass
    return None


#: Globals the generated streams name: allowed ones (some only through Python 2's names) and
#: forbidden ones, so that both an accepted stream and a refused one are common.
_PAIRS = [("collections", "OrderedDict"), ("torch", "FloatStorage"), ("__builtin__", "set"),
          ("builtins", "set"), ("torch._utils", "_rebuild_tensor_v2"), ("_codecs", "encode"),
          ("torch", "Size"), ("builtins", "exec"), ("os", "system"), ("posix", "system"),
          ("copy_reg", "_reconstructor"), ("torch", "serialization.os.system"),
          ("torch.nn", "parameter.Parameter")]
_WORDS = sorted({w for pair in _PAIRS for w in pair} | {"\u00e9", ""})


def _string(kind: int, value: str) -> bytes:
    data = value.encode()
    return [b"\x8c" + bytes([len(data)]) + data,                    # SHORT_BINUNICODE
            b"X" + struct.pack("<I", len(data)) + data,               # BINUNICODE
            b"\x8d" + struct.pack("<Q", len(data)) + data,            # BINUNICODE8
            b"V" + value.encode("raw-unicode-escape") + b"\n",        # UNICODE
            b"S'" + data + b"'\n",                                    # STRING
            b"U" + bytes([len(data)]) + data,                         # SHORT_BINSTRING
            b"T" + struct.pack("<i", len(data)) + data,               # BINSTRING
            b"C" + bytes([len(data)]) + data][kind]                   # SHORT_BINBYTES


def _named(opcode: bytes, pair: tuple[str, str]) -> bytes:
    return opcode + pair[0].encode() + b"\n" + pair[1].encode() + b"\n"


_pair = st.sampled_from(_PAIRS) | st.tuples(st.sampled_from(_WORDS), st.sampled_from(_WORDS))
_index = st.integers(0, 5)
_string_op = st.builds(_string, st.integers(0, 7), st.sampled_from(_WORDS))
_memo_op = st.one_of(
    st.just(b"\x94"),                                                        # MEMOIZE
    st.builds(lambda i: b"q" + bytes([i]), _index),                          # BINPUT
    st.builds(lambda i: b"r" + struct.pack("<I", i), _index),                # LONG_BINPUT
    st.builds(lambda i: b"p" + str(i).encode() + b"\n", _index),             # PUT
    st.builds(lambda i: b"h" + bytes([i]), _index),                          # BINGET
    st.builds(lambda i: b"j" + struct.pack("<I", i), _index),                # LONG_BINGET
    st.builds(lambda i: b"g" + str(i).encode() + b"\n", _index))             # GET
_op = st.one_of(
    _string_op, _string_op, _memo_op, _memo_op,
    st.builds(lambda k1, k2, p: _string(k1, p[0]) + _string(k2, p[1]) + b"\x93",  # STACK_GLOBAL
              st.integers(0, 6), st.integers(0, 6), _pair),
    st.builds(lambda p: _named(b"c", p), _pair),                              # GLOBAL
    st.builds(lambda p: b"(" + _named(b"i", p), _pair),                       # MARK, INST
    st.builds(lambda i: b"\x80" + bytes([i]), st.integers(0, 5)),             # PROTO
    st.builds(lambda i: b"\x82" + bytes([i]), st.sampled_from([1, 240, 241])),  # EXT1
    st.builds(lambda i: b"\x95" + struct.pack("<Q", i), st.integers(0, 64)),  # FRAME
    st.sampled_from([b"(", b"0", b"1", b"2", b"\x93"]),   # MARK POP POP_MARK DUP STACK_GLOBAL
    st.sampled_from([b"R", b"\x81", b"\x92", b"o", b"b", b"t", b"\x85", b"\x86", b"\x87", b")",
                     b"]", b"}", b"\x8f", b"l", b"d", b"a", b"e", b"s", b"u", b"\x90", b"\x91",
                     b"N", b"\x88", b"K\x07", b"I0x10\n", b"I01\n", b"L12L\n", b"F1.5\n",
                     b"Q", b"Pid\n", b"\x98", b"\x97", b"."]),
)


@pytest.fixture
def extension_codes():
    """Codes 240 (collections.OrderedDict, allowed) and 241 (posix.system) registered, as a
    library may do; 1 stays unregistered."""
    import copyreg
    import os

    copyreg.add_extension("collections", "OrderedDict", 240)
    copyreg.add_extension(os.system.__module__, "system", 241)
    yield
    copyreg.remove_extension("collections", "OrderedDict", 240)
    copyreg.remove_extension(os.system.__module__, "system", 241)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=16))
# the classes found so far, always tried: the memo's MEMOIZE slot, an INT pickletools cannot
# parse, a name that is not ASCII, a line across a frame's end (the C unpickler drops the
# frame's last bytes), a frame longer than the data (Python's unpickler reads on), a Python 2
# name at protocol 3 (not mapped), an extension code
@example(ops=[memo_confusion(Path("m"))[:-1]])
@example(ops=[b"I0x10\n", b"0", _named(b"c", ("os", "system"))])
@example(ops=[_named(b"c", ("builtins", "\u00e9"))])
@example(ops=[b"\x95" + struct.pack("<Q", 2), _named(b"c", ("collections", "OrderedDict"))])
@example(ops=[b"\x95" + struct.pack("<Q", 13), _named(b"c", ("os", "system"))])
@example(ops=[b"\x80\x03", _named(b"c", ("__builtin__", "set"))])
@example(ops=[b"\x82\xf1"])
def test_the_scanner_never_accepts_what_the_unpickler_would_resolve_badly(ops: list[bytes],
                                                                          extension_codes) -> None:
    """Whenever the scanner accepts a stream, no real unpickler (C or reference) resolves a
    global outside the allow-list from it."""
    data = b"".join(ops) + b"."
    finding = PickleFinding()
    scan_pickle(io.BytesIO(data), finding)
    if refusal(finding) is None:
        assert _forbidden_global_reached(data) is None, (data, finding.globals)


@pytest.mark.parametrize("protocol", range(6))
def test_the_scanner_reads_real_pickles_of_allowed_objects(protocol: int) -> None:
    """No false refusals: what torch's weights-only load accepts, pickled at any protocol
    (protocols 0-2 name sets as ``__builtin__.set``, mapped back as loading maps them)."""
    import collections

    value = [torch.Size([2, 3]), {1, 2}, collections.OrderedDict(x=1), bytearray(b"q"),
             collections.Counter("ab"), torch.device("cpu"), 1 + 2j, torch.float16, "x" * 5000]
    data = pickle.dumps(value, protocol=protocol)
    torch.load(io.BytesIO(torch_save_bytes(value)), weights_only=True)  # torch agrees
    finding = PickleFinding()
    assert scan_pickle(io.BytesIO(data), finding)
    assert refusal(finding) is None, (finding.globals, finding.unverifiable)


# ---- whole archives mangled at random --------------------------------------------------------
_MEMBERS = ["data/sample_inputs/model.pt", "data/weights/weight_0", "data/weights/model_weights_config.json",
            "data/constants/model_constants_config.json", "models/model.json", "archive_format",
            "archive_version", "byteorder", ".data/version"]


def _mutations(marker: Path) -> st.SearchStrategy:
    payloads = st.sampled_from([
        torch_save_bytes(Payload(marker)), _zip_with_data_pkl(memo_confusion(marker)),
        memo_confusion(marker), int_base_zero(marker), pickle.dumps(Payload(marker), protocol=0),
        b"", b"\x80\x02garbage", b"PK\x03\x04truncated", b'{"config": {}}', b"\x7fELF"])
    member = st.sampled_from(_MEMBERS)
    return st.lists(st.one_of(
        st.tuples(st.just("replace"), member, payloads),
        st.tuples(st.just("truncate"), member, st.integers(0, 64)),
        st.tuples(st.just("drop"), member, st.none()),
        st.tuples(st.just("rename"), member, st.sampled_from(["data/aotinductor/model/x.so",
                                                               "extra/x", "models/other.json"])),
        st.tuples(st.just("add"), st.sampled_from(["data/constants/opaque_obj_0", "extra/inner.zip",
                                                    "data/weights/model.pt"]), payloads),
        st.tuples(st.just("pickle-weight"), st.none(), st.none()),
    ), min_size=1, max_size=3)


def _mangle(good: Path, dst: Path, steps: list) -> None:
    with zipfile.ZipFile(good) as zf:
        prefix = zf.namelist()[0].split("/")[0] + "/"
        members = {n[len(prefix):]: zf.read(n) for n in zf.namelist()}
    for action, name, value in steps:
        if action == "replace" and name in members:
            members[name] = value
        elif action == "truncate" and name in members:
            members[name] = members[name][:value]
        elif action == "drop":
            members.pop(name, None)
        elif action == "rename" and name in members:
            members[value] = members.pop(name)
        elif action == "add":
            members[name] = value
        elif action == "pickle-weight":
            cfg_name = "data/weights/model_weights_config.json"
            try:
                cfg = json.loads(members[cfg_name])
                next(iter(cfg["config"].values()))["use_pickle"] = True
                members[cfg_name] = json.dumps(cfg).encode()
            except (KeyError, ValueError, StopIteration, TypeError, AttributeError):
                pass
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(prefix + name, data)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_mangled_archive_is_refused_in_one_line_or_loaded_never_run(good_pt2: Path,
                                                                       tmp_path: Path,
                                                                       data: st.DataObject) -> None:
    """With the scanner on, and with it off (the loader alone)."""
    marker = tmp_path / "payload-ran"
    steps = data.draw(_mutations(marker))
    path = tmp_path / "mangled.pt2"
    _mangle(good_pt2, path, steps)
    with pytest.MonkeyPatch.context() as patch:
        if data.draw(st.booleans(), label="scanner off"):
            patch.setattr(pickles, "check_model_file", lambda *a, **k: None)
        try:
            load_model(str(path), inputs=("1x16",))
        except (InvalidInputError, UnsafeFileError) as exc:
            assert str(exc) and "\n" not in str(exc), str(exc)
    assert not marker.exists(), steps
