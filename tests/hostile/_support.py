"""Material for the hostile tests: malicious and damaged files, a real stored run, checks.

Every payload writes one marker file when it runs; an autouse check fails any test after
which that marker exists. The payloads are real: ``test_payloads_are_live`` proves each one
runs when a loader is told to trust it, so "the marker is absent" means chipfit refused.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import run_cli

# ---- payloads ---------------------------------------------------------------------------------


class Payload:
    """A pickle whose loading writes ``marker`` (via builtins.exec, as real exploits do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def torch_save_bytes(obj: object) -> bytes:
    """``obj`` in torch.save's zip format (what a .pt2 keeps its pickles in)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes],
                 add: dict[str, bytes] | None = None) -> None:
    add = add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
        prefix = zin.namelist()[0].split("/")[0]
        for name, data in add.items():
            zout.writestr(f"{prefix}/{name}", data)


@dataclass(frozen=True)
class Material:
    """Files built once: good models, malicious ones, damaged ones."""

    root: Path
    marker: Path
    good_pt2: Path
    good_ts: Path

    def path(self, name: str) -> Path:
        return self.root / name


_FACTORIES = '''
import os, sys, time, torch

class Raising(torch.nn.Module):
    def forward(self, x):
        raise ValueError("boom in forward")

class Hungry(torch.nn.Module):
    def forward(self, x):  # 50 GB unless told otherwise: more than the memory cap allows
        size = int(os.environ.get("HUNGRY_BYTES", 50 * 2**30))
        return torch.ones(size, dtype=torch.uint8).sum() + x.sum()

class Uncountable(torch.nn.Module):
    """Runs, but refuses to run under a dispatch mode (the FLOP counter is one)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 4)

    def forward(self, x):
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        if _get_current_dispatch_mode() is not None:
            raise RuntimeError("cannot be counted")
        return self.lin(x)

def uncountable():
    return Uncountable()

def mlp():
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

def raises():
    raise RuntimeError("factory exploded")

def three():
    return mlp(), (torch.randn(1, 16),), "extra"

def a_class():
    return torch.nn.Linear

def raising_forward():
    return Raising()

def hungry():
    return Hungry()

def hangs():
    time.sleep(10**6)

def exits():
    sys.exit(0)

def bad_inputs():
    return mlp(), ("not", "tensors")
'''


def build_material(root: Path, marker: Path) -> Material:
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    good_pt2 = root / "good.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 16),)), str(good_pt2))
    good_ts = root / "good_ts.pt"
    torch.jit.save(torch.jit.script(model), str(good_ts))
    evil = Payload(marker)
    evil_inner = torch_save_bytes(evil)

    # .pt2 whose example inputs are a payload: torch.export.load falls back to full unpickling
    _rewrite_zip(good_pt2, root / "evil_inputs.pt2", {"data/sample_inputs/model.pt": evil_inner})
    shutil.copy(root / "evil_inputs.pt2", root / "evil_inputs_renamed.pt")
    shutil.copy(root / "evil_inputs.pt2", root / "evil_inputs_noext")
    # .pt2 whose first weight is marked "use_pickle": always fully unpickled by torch
    with zipfile.ZipFile(good_pt2) as zf:
        cfg_name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        cfg = json.loads(zf.read(cfg_name))
    first = next(iter(cfg["config"].values()))
    first["use_pickle"] = True
    _rewrite_zip(good_pt2, root / "evil_weights.pt2",
                 {cfg_name.split("/", 1)[1]: json.dumps(cfg).encode(),
                  f"data/weights/{first['path_name']}": evil_inner})
    # a payload nested two archives deep, in a member no loader names
    _rewrite_zip(good_pt2, root / "evil_nested.pt2", {},
                 {"extra/inner.zip": _zip_of({"a/data.pkl": pickle.dumps(evil, protocol=2)})})
    # classic full pickles
    (root / "evil_torchsave.pt").write_bytes(evil_inner)
    (root / "evil_raw.pkl").write_bytes(pickle.dumps(evil, protocol=2))
    (root / "evil_proto0.pt").write_bytes(pickle.dumps(evil, protocol=0))
    (root / "evil_stack_global.pth").write_bytes(pickle.dumps(evil, protocol=4))
    # TorchScript archive with its pickled data replaced by garbage
    _rewrite_zip(good_ts, root / "bad_ts.pt", {"/data.pkl": b"\x80\x02garbage" * 10})
    (root / "garbage.pt2").write_bytes(bytes(range(256)) * 4)
    (root / "empty.pt").write_bytes(b"")
    (root / "adir.pt").mkdir()

    # safetensors for the factory mlp: good, wrong shape, other dtype, truncated, garbage
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(root / "good.safetensors"))
    save_file({**state, "0.weight": torch.randn(3, 3)}, str(root / "wrong_shape.safetensors"))
    save_file({k: v.to(torch.float16) for k, v in state.items()}, str(root / "half.safetensors"))
    data = (root / "good.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (root / "garbage.safetensors").write_bytes(b"\xff\xfe not safetensors at all" * 20)

    (root / "factories.py").write_text(_FACTORIES)
    (root / "syntax_error.py").write_text("def mlp(:\n    return 1\n")
    return Material(root, marker, good_pt2, good_ts)


def _zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ---- a real measured run, for the history and report cases -----------------------------------
@dataclass(frozen=True)
class StoredRun:
    db: Path
    json: Path
    run_id: str


def build_stored_run(root: Path) -> StoredRun:
    """One quick real bench (matmul 64 and 96 on torch:cpu), in a database and a JSON file."""
    db, out = root / "history.sqlite3", root / "run.json"
    run_cli("bench", "-w", "matmul", "-s", "64,96", "-d", "torch:cpu", "--quick", "--no-save",
            "--db", str(db), "--json", str(out), env={"CHIPFIT_HOME": str(root / "home")},
            check=True)
    return StoredRun(db, out, json.loads(out.read_text())["run_id"])


def copy_db(run: StoredRun, dst: Path) -> Path:
    shutil.copy(run.db, dst)
    return dst


def sql(db: Path, statement: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


# ---- what every refusal looks like -------------------------------------------------------------
def assert_refused(proc: subprocess.CompletedProcess[str], code: int = 2,
                   says: str | None = None) -> None:
    """Exit ``code``, exactly one message on stderr (a warning wrapped at the terminal's
    width continues on indented lines: one message), no traceback anywhere."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    lines = [line for i, line in enumerate(lines) if i == 0 or not line.startswith(" ")]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    if says is not None:
        assert says.lower() in lines[0].lower(), lines[0]


def no_temp_files(folder: Path) -> list[str]:
    """Leftover temporary files of chipfit's atomic writer in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


PYTHON = sys.executable
