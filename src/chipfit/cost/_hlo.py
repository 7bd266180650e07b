"""Kernels of an optimized XLA program, read from its HLO text (``compiled.as_text()``).

Every instruction of the ENTRY computation that does work (a fusion, a custom call, a dot,
a convolution, a copy ...) is one kernel. Its bytes are its operands' plus its result's sizes;
its class comes from what it computes (a fusion is classed by the body it calls). FLOPs of
dots and convolutions are counted from their shapes; other kernels count one FLOP per output
element (the convention of :mod:`chipfit.cost.records`). A ``while`` loop with a known trip
count (``lax.scan``) contributes its body's kernels that many times; XLA's own
``cost_analysis()`` counts a loop body once, which is why it is not used per kernel.

Pure text processing: no JAX import, so it is unit-testable on a saved HLO string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from chipfit.cost.records import GEMV_ROWS, OpCost, merge_ops

__all__ = ["HloKernel", "entry_kernels", "op_costs"]

_ITEMSIZE = {"pred": 1, "s4": 1, "u4": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2,
             "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8,
             "c128": 16}
_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64",
          "s8": "int8", "u8": "uint8"}
_SHAPE = re.compile(r"\b([a-z]+[0-9]*(?:e[0-9]+m[0-9]+[a-z]*)?)\[([0-9,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
# Opcodes that only move or re-lay data; a fusion of nothing else is a copy.
_MOVES = {"parameter", "constant", "transpose", "copy", "bitcast", "broadcast", "reshape",
          "slice", "dynamic-slice", "dynamic-update-slice", "concatenate", "pad", "gather",
          "tuple", "get-tuple-element", "convert"}
_FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all",
         "partition-id", "replica-id", "opt-barrier", "add-dependency", "domain"}


@dataclass(frozen=True)
class HloKernel:
    name: str
    opcode: str
    op_class: str
    dtype: str
    flops: float
    bytes_moved: float
    out_elements: int
    count: int = 1
    in_loop: bool = False  # inside a while body run more than once
    # a dot with at most GEMV_ROWS output rows: "gemv", and its output shape (the predictor
    # reads the rows); other kernels ""/()
    variant: str = ""
    out_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Instr:
    name: str
    type_text: str
    opcode: str
    operands: tuple[str, ...]
    attrs: str
    args: str = ""  # the raw text between the opcode's parentheses (a parameter's index)


def _itemsize(element: str) -> int:
    if element.startswith("f8"):
        return 1
    return _ITEMSIZE.get(element, 0)


def _shapes(type_text: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(m.group(1), tuple(int(d) for d in m.group(2).split(",") if d))
            for m in _SHAPE.finditer(type_text)]


def type_bytes(type_text: str) -> float:
    """Bytes of an HLO type such as ``f32[64,16]{1,0}`` or a tuple of them."""
    return float(sum(_itemsize(e) * math.prod(dims) for e, dims in _shapes(type_text)))


def _split_type(rest: str) -> tuple[str, str]:
    """Split ``TYPE opcode(...)...`` into the type text and the remainder."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[: i + 1], rest[i + 1:].strip()
    head, _, tail = rest.partition(" ")
    return head, tail.strip()


def _parse_instr(line: str) -> _Instr | None:
    match = _INSTR.match(line)
    if not match:
        return None
    type_text, rest = _split_type(match.group(2).strip())
    op_match = re.match(r"([\w\-]+)\((.*?)\)(.*)$", rest)
    if not op_match:
        return None
    operands = tuple(o.strip().lstrip("%") for o in op_match.group(2).split(",")
                     if o.strip().startswith("%"))
    return _Instr(match.group(1), type_text, op_match.group(1), operands, op_match.group(3),
                  op_match.group(2))


def parse_computations(text: str) -> tuple[dict[str, list[_Instr]], str | None]:
    """Computation name -> instructions, and the ENTRY computation's name."""
    comps: dict[str, list[_Instr]] = {}
    current, entry = None, None
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            current = header.group(2)
            comps[current] = []
            entry = current if header.group(1) else entry
            continue
        if line.strip() == "}":
            current = None
            continue
        if current is not None:
            instr = _parse_instr(line)
            if instr is not None:
                comps[current].append(instr)
    return comps, entry


def _dot_flops(instr: _Instr, types: dict[str, str]) -> float:
    out = _shapes(instr.type_text)
    lhs = _shapes(types.get(instr.operands[0], "")) if instr.operands else []
    dims = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", instr.attrs)
    if not out or not lhs or not dims:
        return 0.0
    contracted = math.prod(lhs[0][1][int(d)] for d in dims.group(1).split(",") if d)
    return 2.0 * math.prod(out[0][1]) * contracted


def _conv_flops(instr: _Instr, types: dict[str, str]) -> float:
    """2 x output elements x window size x input features per group."""
    out = _shapes(instr.type_text)
    rhs = _shapes(types.get(instr.operands[1], "")) if len(instr.operands) > 1 else []
    labels = re.search(r"dim_labels=\w+_(\w+)->\w+", instr.attrs)
    window = re.search(r"window=\{size=([0-9x]+)", instr.attrs)
    if not out or not rhs or not labels:
        return 0.0
    rhs_labels = labels.group(1)
    in_features = rhs[0][1][rhs_labels.index("i")] if "i" in rhs_labels else 1
    taps = math.prod(int(s) for s in window.group(1).split("x")) if window else 1
    return 2.0 * math.prod(out[0][1]) * taps * in_features


def _gemv(kernel: HloKernel, instr: _Instr, body: list[_Instr] | None) -> HloKernel:
    """``kernel`` marked ``gemv`` with its dot's output shape where the dot (alone or fused)
    has at most GEMV_ROWS output rows (the smaller of its last two dimensions)."""
    dots = [i for i in (body or [instr]) if i.opcode == "dot"]
    if kernel.op_class != "matmul" or len(dots) != 1:
        return kernel
    out = _shapes(dots[0].type_text)
    dims = tuple(out[0][1]) if out else ()
    dims = (1, *dims) if len(dims) == 1 else dims  # a matrix-vector product: one row
    if len(dims) < 2 or min(dims[-2:]) > GEMV_ROWS:
        return kernel
    return replace(kernel, variant="gemv", out_shape=dims)


def _body_work(comp: list[_Instr]) -> tuple[str, float]:
    """The class of a fused body and the matrix FLOPs inside it."""
    types = {i.name: i.type_text for i in comp}
    flops, op_class = 0.0, ""
    for instr in comp:
        if instr.opcode == "dot":
            flops += _dot_flops(instr, types)
            op_class = "matmul"
        elif instr.opcode == "convolution":
            flops += _conv_flops(instr, types)
            op_class = op_class or "conv"
        elif instr.opcode in ("reduce", "reduce-window", "scatter", "sort") and not op_class:
            op_class = "reduction"
    if not op_class and all(i.opcode in _MOVES for i in comp):
        return "memory", 0.0
    return op_class or "elementwise", flops


def _custom_call_class(attrs: str) -> str:
    target = re.search(r'custom_call_target="([^"]+)"', attrs)
    name = (target.group(1) if target else "").lower()
    if any(w in name for w in ("matmul", "gemm", "dot", "blas")):
        return "matmul"
    if "conv" in name:
        return "conv"
    return "other"


def _classify(instr: _Instr, comps: dict[str, list[_Instr]],
              types: dict[str, str]) -> tuple[str, float]:
    called = re.search(r"calls=%([\w.\-]+)", instr.attrs)
    if instr.opcode == "fusion" and called and called.group(1) in comps:
        return _body_work(comps[called.group(1)])
    if instr.opcode == "dot":
        return "matmul", _dot_flops(instr, types)
    if instr.opcode == "convolution":
        return "conv", _conv_flops(instr, types)
    if instr.opcode == "custom-call":
        return _custom_call_class(instr.attrs), 0.0
    if instr.opcode in ("copy", "transpose", "concatenate", "slice", "dynamic-slice",
                        "dynamic-update-slice", "gather", "pad", "broadcast"):
        return "memory", 0.0
    if instr.opcode in ("reduce", "reduce-window", "sort", "scatter"):
        return "reduction", 0.0
    if instr.opcode in ("while", "call", "conditional"):
        return "other", 0.0
    return "elementwise", 0.0


def op_costs(kernels: Iterable[HloKernel]) -> tuple[OpCost, ...]:
    """The kernels as chipfit's operator records, identical ones merged."""
    return merge_ops(OpCost(k.opcode, k.op_class, k.dtype, k.flops, k.bytes_moved, 1, k.count,
                            k.variant, (k.out_shape,) if k.out_shape else (), k.in_loop)
                     for k in kernels)


def entry_kernels(text: str) -> list[HloKernel]:
    """The kernels of the ENTRY computation of an optimized HLO module (loops unrolled)."""
    comps, entry = parse_computations(text)
    if entry is None:
        return []
    return _kernels(entry, comps, 1, depth=0)


def _trip_count(attrs: str) -> int:
    match = re.search(r'"known_trip_count":\{"n":"(\d+)"', attrs)
    return int(match.group(1)) if match else 1


def _kernels(name: str, comps: dict[str, list[_Instr]], times: int, depth: int) -> list[HloKernel]:
    types = {i.name: i.type_text for i in comps[name]}
    out: list[HloKernel] = []
    for instr in comps[name]:
        if instr.opcode in _FREE:
            continue
        body = re.search(r"body=%([\w.\-]+)", instr.attrs)
        if instr.opcode == "while" and body and body.group(1) in comps and depth < 8:
            trips = _trip_count(instr.attrs)
            inner = _kernels(body.group(1), comps, times * trips, depth + 1)
            out += [replace(k, in_loop=True) for k in inner] if trips > 1 else inner
            continue
        called = re.search(r"to_apply=%([\w.\-]+)", instr.attrs)
        if instr.opcode == "call" and called and called.group(1) in comps and depth < 8:
            out += _kernels(called.group(1), comps, times, depth + 1)
            continue
        out.append(_kernel(instr, comps, types, times))
    return out


def _fusion_bytes(instr: _Instr, body: list[_Instr], types: dict[str, str]) -> float:
    """Bytes a fusion moves: an operand it only slices counts as the slice, a buffer it
    updates in place (dynamic-update-slice) as the update, written once."""
    params = {i.args.strip(): i.name for i in body if i.opcode == "parameter"}
    inner = {i.name: i.type_text for i in body}
    total = 0.0
    for index, operand in enumerate(instr.operands):
        name = params.get(str(index))
        users = [u for u in body if name in u.operands]
        if users and all(u.opcode in ("dynamic-slice", "slice", "gather")
                         and u.operands[0] == name for u in users):
            total += sum(type_bytes(u.type_text) for u in users)
        elif users and all(u.opcode == "dynamic-update-slice" and u.operands[0] == name
                           for u in users):
            continue  # the buffer is updated in place: only the update is written
        else:
            total += type_bytes(types.get(operand, ""))
    updates = [u for u in body if u.opcode == "dynamic-update-slice"]
    if updates:
        return total + sum(type_bytes(inner.get(u.operands[1], "")) for u in updates
                           if len(u.operands) > 1)
    return total + type_bytes(instr.type_text)


def _kernel(instr: _Instr, comps: dict[str, list[_Instr]], types: dict[str, str],
            times: int) -> HloKernel:
    op_class, flops = _classify(instr, comps, types)
    called = re.search(r"calls=%([\w.\-]+)", instr.attrs)
    body = comps.get(called.group(1)) if instr.opcode == "fusion" and called else None
    nbytes = _fusion_bytes(instr, body, types) if body else (
        type_bytes(instr.type_text) + sum(type_bytes(types.get(o, "")) for o in instr.operands))
    shapes = _shapes(instr.type_text)
    elements = sum(math.prod(d) for _, d in shapes)
    dtype = _DTYPE.get(shapes[0][0], shapes[0][0]) if shapes else "float32"
    if not flops and op_class != "memory":
        flops = float(elements)  # the one-FLOP-per-element convention
    return _gemv(HloKernel(instr.name, instr.opcode, op_class, dtype, flops, nbytes, elements,
                           times), instr, body)
