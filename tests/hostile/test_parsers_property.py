"""Property tests of every parser of user text: sizes, shapes, dtypes, device ids, input specs
(and the small ones beside them: finite numbers, Ray labels, run references).

Two properties each: any text whatsoever gives either a value or chipfit's one-line usage
error (never another exception, never a hang on ``10^999999999``), and what is printed parses
back to the same value. The list flags (``--hardware``, ``--devices``, ``--dtypes``,
``--sizes``, ``--input``) are driven through the real argument parser and the one list check;
Ray addresses, the terminal escaper and the ASCII fallback have properties of their own.
"""

from __future__ import annotations

import argparse
import functools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipfit.commands._common import _labels, finite_float
from chipfit.errors import InvalidInputError, UsageError
from chipfit.spec import DTYPES, DeviceRef, parse_dtype
from chipfit.workloads.base import MAX_COUNT, parse_count
from chipfit.workloads.matmul import Matmul
from chipfit.workloads.user import MAX_INPUT_ELEMENTS, InputSpec, parse_input

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what the parsers expect (digits, x, @, :, ^, suffixes), and anything.
_NEAR = st.text(alphabet="0123456789xX@:^kmgiKMGI_ -+.et/[]", max_size=40)
TEXT = st.one_of(_NEAR, st.text(max_size=40))


@FAST
@given(TEXT)
def test_any_size_text_is_a_bounded_count_or_a_usage_error(text: str) -> None:
    try:
        value = parse_count(text)
    except InvalidInputError:
        return
    assert isinstance(value, int) and 1 <= value <= MAX_COUNT


@FAST
@given(st.integers(1, MAX_COUNT), st.sampled_from(["", "k", "m", "g", "ki", "mi", "gi"]))
def test_counts_parse_back(n: int, suffix: str) -> None:
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    if n * scale[suffix] > MAX_COUNT:
        with pytest.raises(InvalidInputError, match="too large"):
            parse_count(f"{n}{suffix.upper()}")
    else:
        assert parse_count(f" {n}{suffix.upper()} ") == n * scale[suffix]


@FAST
@given(st.integers(0, 10**6), st.integers(0, 999))
def test_powers_never_hang_and_stay_bounded(base: int, exp: int) -> None:
    try:
        value = parse_count(f"{base}^{exp}")
    except InvalidInputError:
        assert base == 0 or (base > 1 and exp * math.log2(base) > 53) or (exp == 0 and False)
        return
    assert value == base**exp <= MAX_COUNT


@FAST
@given(TEXT)
def test_any_matmul_size_is_canonical_or_a_usage_error(text: str) -> None:
    try:
        size = Matmul().parse_size(text)
    except InvalidInputError:
        return
    assert Matmul().parse_size(size) == size  # canonical form is a fixed point
    assert Matmul().cost(size, "float32").flops > 0


@FAST
@given(st.integers(1, 10**5), st.integers(1, 10**5), st.integers(1, 10**5))
def test_matmul_shapes_parse_back_and_cost_2mkn(m: int, k: int, n: int) -> None:
    size = Matmul().parse_size(f"{m}x{k}@{k}x{n}")
    assert size == f"{m}x{k}@{k}x{n}"
    assert Matmul().cost(size, "float32").flops == 2.0 * m * k * n
    with pytest.raises(InvalidInputError, match="inner dimensions"):
        Matmul().parse_size(f"{m}x{k}@{k + 1}x{n}")


@FAST
@given(TEXT)
def test_any_dtype_text_is_canonical_or_a_usage_error(text: str) -> None:
    try:
        name = parse_dtype(text)
    except UsageError:
        return
    assert name in DTYPES and parse_dtype(name) == name


@FAST
@given(st.sampled_from(["fp32", "F32", "float", "BF16", " bfloat16 ", "fp16", "HALF", "f16"]))
def test_dtype_aliases(text: str) -> None:
    assert parse_dtype(text) in DTYPES


_REFS = st.builds(DeviceRef, st.sampled_from(["torch", "jax", "my_backend"]),
                  st.sampled_from(["cpu", "cuda", "tpu", "xla", "mps"]),
                  st.one_of(st.none(), st.integers(0, 999_999)),
                  st.one_of(st.none(), st.integers(1, 4096)))


@FAST
@given(_REFS)
def test_device_ids_parse_back(ref: DeviceRef) -> None:
    assert DeviceRef.parse(str(ref)) == ref
    assert DeviceRef.parse(f"  {str(ref).upper()} ") == ref


@FAST
@given(st.one_of(TEXT, st.text(alphabet="torchjaxcpu:@t0123456789", max_size=30)))
def test_any_device_text_is_a_device_or_a_usage_error(text: str) -> None:
    try:
        ref = DeviceRef.parse(text)
    except InvalidInputError:
        return
    assert DeviceRef.parse(str(ref)) == ref
    assert ref.threads is None or ref.threads >= 1


_DTYPES_IN = st.sampled_from(["float32", "float16", "bfloat16", "float64", "int64", "int32",
                              "bool"])


@FAST
@given(st.lists(st.integers(1, 1024), min_size=1, max_size=4), _DTYPES_IN)
def test_input_specs_parse_back(shape: list[int], dtype: str) -> None:
    spec = InputSpec(tuple(shape), dtype)
    assert parse_input(str(spec)) == spec
    assert spec.nbytes() == math.prod(shape) * {"float16": 2, "bfloat16": 2, "float64": 8,
                                                "int64": 8, "bool": 1}.get(dtype, 4)


@FAST
@given(st.one_of(TEXT, st.text(alphabet="0123456789x:float3264", max_size=60)))
def test_any_input_text_is_a_bounded_spec_or_a_usage_error(text: str) -> None:
    try:
        spec = parse_input(text)
    except UsageError:
        return
    assert all(d >= 1 for d in spec.shape)
    assert math.prod(spec.shape) <= MAX_INPUT_ELEMENTS


@FAST
@given(st.lists(st.integers(1, 10**12), min_size=2, max_size=6))
def test_huge_inputs_are_refused_not_overflowed(shape: list[int]) -> None:
    text = "x".join(map(str, shape))
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        with pytest.raises(InvalidInputError, match="elements"):
            parse_input(text)
    else:
        assert parse_input(text).shape == tuple(shape)


@FAST
@given(st.one_of(TEXT, st.sampled_from(["nan", "-inf", "inf", "1e400", "NaN", "0x10"]),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr)))
def test_numbers_on_the_command_line_are_finite_or_refused(text: str) -> None:
    try:
        value = finite_float(text)
    except argparse.ArgumentTypeError:
        return
    assert math.isfinite(value)


@FAST
@given(TEXT)
def test_ray_labels_are_pairs_or_a_usage_error(text: str) -> None:
    try:
        labels = _labels(text)
    except InvalidInputError:
        return
    assert labels is None or all(k and k == k.strip() for k in labels)


def test_run_references_are_runs_or_a_usage_error(tmp_path) -> None:
    from chipfit.store import open_store

    @FAST
    @given(st.one_of(TEXT, st.sampled_from(["latest", "latest~", "latest~1", "latest~x",
                                            "latest~99999999999999999999999"])))
    def check(text: str) -> None:
        with pytest.raises(InvalidInputError):
            store.resolve(text)

    with open_store(tmp_path / "empty.sqlite3") as store:
        check()


@FAST
@given(st.one_of(TEXT, st.text(alphabet="0123456789,-x ", max_size=30)))
def test_feed_worker_counts_are_bounded_or_a_usage_error(text: str) -> None:
    from chipfit.pipelines.feed import max_workers, parse_workers

    try:
        counts = parse_workers(text, cores=2)
    except InvalidInputError:
        return
    assert counts and counts == tuple(sorted(set(counts)))
    assert all(0 <= w <= max_workers(2) for w in counts)


@FAST
@given(st.one_of(TEXT, st.text(alphabet="0123456789xX ", max_size=20)))
def test_feed_image_sizes_are_bounded_or_a_usage_error(text: str) -> None:
    from chipfit.pipelines.feed import MAX_SOURCE_SIDE, parse_source

    try:
        width, height = parse_source(text)
    except InvalidInputError:
        return
    assert 8 <= width <= MAX_SOURCE_SIDE and 8 <= height <= MAX_SOURCE_SIDE


# ---- the list flags, as the command line reads them -------------------------------------------
_LIST_TEXT = st.one_of(TEXT, st.text(alphabet=",: @tTorchjaxcpu0123456789h-sxm", max_size=40),
                       st.lists(st.sampled_from(["torch:cpu", "TORCH:CPU", "h100-sxm", "l4", "",
                                                 " ", "torch:cpu@0t", "torch:cpu@1t", "jax:cpu:0",
                                                 "64", "1k", "fp16", "bf16", "float32"]),
                                max_size=6).map(",".join))


def _item_parser(flag: str):
    """What a command does with each item of ``flag`` after the list is read."""
    from chipfit.hardware.catalog import load_catalog
    from chipfit.workloads.user import parse_input

    catalog = load_catalog()

    def hardware(item: str) -> object:
        return DeviceRef.parse(item) if ":" in item else item == "local" or catalog[item]

    return {"--hardware": hardware, "--devices": DeviceRef.parse, "--dtypes": parse_dtype,
            "--sizes": Matmul().parse_size, "--input": parse_input}[flag]


@FAST
@given(st.sampled_from(["--hardware", "--devices", "--dtypes", "--sizes", "--input"]), _LIST_TEXT)
def test_any_list_flag_is_a_clean_list_or_one_line_error(flag: str, text: str) -> None:
    """Through the real parser and the one list check: each value once, none empty, every
    item then parsed (a catalog key, a device, a dtype, a size, an input shape), or one
    line from chipfit's own errors; never another exception."""
    from chipfit.commands._common import check_list_flags
    from chipfit.errors import ChipfitError

    argv = (["predict", "matmul", f"{flag}={text}"] if flag in ("--hardware", "--input")
            else ["bench", f"{flag}={text}"])
    args = _parser().parse_args(argv)
    try:
        check_list_flags(args)
        attr = flag[2:]
        items = getattr(args, attr)
        items = items if isinstance(items, list) else items.split(",")
        assert items and all(i.strip() == i and i for i in items)
        if flag != "--input":
            assert len({i.lower() for i in items}) == len(items), items
        parsed = [_item_parser(flag)(i) for i in items]
    except ChipfitError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert len(parsed) == len(items)


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    from chipfit.cli import build_parser

    return build_parser()


@FAST
@given(st.one_of(TEXT, st.text(alphabet="ray:/.[]0123456789abcdef", max_size=40)))
def test_any_ray_address_is_a_host_and_port_or_one_line_error(text: str) -> None:
    from chipfit.execute.ray import parse_address

    try:
        where = parse_address(text)
    except InvalidInputError as exc:
        assert "\n" not in str(exc)
        return
    if where is not None:
        host, port = where
        assert host and 1 <= port <= 65535 and not any(c.isspace() for c in host)


@FAST
@given(st.text(max_size=60))
def test_clean_leaves_nothing_a_terminal_acts_on_and_only_changes_what_it_must(text: str) -> None:
    import unicodedata

    from chipfit.report.fmt import UNSAFE, clean

    shown = clean(text)
    assert not UNSAFE.search(shown) and clean(shown) == shown
    for char in shown:
        assert char in "\t\n" or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    if not UNSAFE.search(text):
        assert shown == text


@FAST
@given(st.characters())
def test_every_character_has_an_ascii_stand_in(char: str) -> None:
    from chipfit.report.fmt import ascii_for

    stand_in = ascii_for(char)
    assert stand_in and stand_in.isascii()
