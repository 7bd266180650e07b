import pytest

from chipfit.errors import InvalidInputError, UnknownNameError
from chipfit.spec import DeviceRef, TimingConfig, parse_dtype


@pytest.mark.parametrize("text", ["torch:cpu", "torch:cuda:0", "jax:tpu:3", "torch:cpu@1t",
                                  "torch:xla:1"])
def test_device_ref_round_trips(text):
    assert str(DeviceRef.parse(text)) == text


def test_device_ref_fields():
    ref = DeviceRef.parse("torch:cpu@1t")
    assert (ref.backend, ref.platform, ref.index, ref.threads) == ("torch", "cpu", None, 1)
    assert str(ref.base) == "torch:cpu" and ref.is_cpu


@pytest.mark.parametrize("bad", ["cuda", "torch", "torch:cuda:x", ":cpu", "torch:cpu@t"])
def test_malformed_device_is_a_usage_error(bad):
    with pytest.raises(InvalidInputError, match="malformed device"):
        DeviceRef.parse(bad)


def test_dtype_aliases_and_did_you_mean():
    assert parse_dtype("bf16") == "bfloat16"
    assert parse_dtype("FP32") == "float32"
    with pytest.raises(UnknownNameError, match="did you mean 'float16'"):
        parse_dtype("float61")


def test_timing_config_validates():
    with pytest.raises(InvalidInputError):
        TimingConfig(target_rel_ci=0)
    with pytest.raises(InvalidInputError):
        TimingConfig(min_samples=2)
