"""Encoder-decoder generation as users run it (t5-small-generate) on real torch and the CPU:
greedy decoding with the KV cache gives the tokens of the no-cache reference, the workload
measures one whole generation, and each step can be timed apart. On a tiny random T5."""

from __future__ import annotations

import pytest

from chipfit.backends import get_backend
from chipfit.errors import UnsupportedError
from chipfit.spec import DeviceRef
from chipfit.workloads import get_workload
from chipfit.workloads.seq2seq import (
    T5SmallGenerate,
    generate_ids,
    greedy_generate_seq2seq,
    no_cache_greedy_seq2seq,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CPU = DeviceRef("torch", "cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest


class TinyT5Generate(T5SmallGenerate):
    name = "t5-tiny-generate-test"
    vocab, seq, gen_len = 64, 12, 6

    def make_model(self):
        config = transformers.T5Config(vocab_size=self.vocab, d_model=32, d_kv=8, d_ff=64,
                                       num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
                                       decoder_start_token_id=0)
        model = transformers.T5ForConditionalGeneration(config)
        with torch.no_grad():  # wider than T5's init, so greedy tokens differ between steps
            for param in model.parameters():
                param.normal_(0.0, 0.5)
        return model


@pytest.fixture(scope="module")
def tiny():
    import chipfit.workloads as registry

    registry.all_workloads()
    registry._REGISTRY[TinyT5Generate.name] = TinyT5Generate()
    yield registry._REGISTRY[TinyT5Generate.name]
    del registry._REGISTRY[TinyT5Generate.name]


def test_greedy_with_the_kv_cache_equals_the_no_cache_reference(tiny):
    torch.manual_seed(0)
    model = tiny.make_model().eval()
    source = tiny.make_inputs(3, "inference")[0]
    clock = iter(range(100)).__next__  # a fake clock: one tick per read
    waited = []
    found = greedy_generate_seq2seq(model, source, 6, wait=waited.append, clock=clock)
    reference = no_cache_greedy_seq2seq(model, source, 6)
    assert [list(row) for row in found.tokens] == reference
    assert len({t for row in reference for t in row}) > 2  # not one token over and over
    # one fenced, timed step per token: the first (encoder + first step) is the prefill
    assert len(waited) == 6 and found.prefill_s == 1 and found.step_s == (1,) * 5
    with torch.inference_mode():
        assert generate_ids(model, source, 6).tolist() == reference


def test_the_workload_measures_one_whole_generation_and_is_counted(tiny):
    assert get_workload("t5-small-generate").modes == ("inference",)
    with get_backend("torch").session(CPU) as session:
        built = tiny.build("torch", "2", "float32", "inference", session)
        with pytest.raises(UnsupportedError):
            tiny.build("torch", "2", "float32", "train", session)
        steps = tiny.generation("2", session)
    ids = built.fn(*built.host_args)
    assert ids.shape == (2, 6) and built.items == 2
    details = dict(built.details)
    assert details["generated_tokens"] == "6" and details["input"] == "12 tokens in, 6 generated"
    assert [list(r) for r in steps.tokens] == ids.tolist()
    assert len(steps.step_s) == 5 and min(steps.step_s) > 0 and steps.prefill_s > 0
    found = tiny.profile("2", "float32", "inference")
    assert found.method == "fake" and found.flops > 0
    assert tiny.memory_estimate("2", "float32") > found.param_bytes
    with pytest.raises(UnsupportedError):
        tiny.inference_module("1")
