"""The input pipelines for real: Pillow encodes and decodes JPEGs, ``tokenizers`` builds and
runs a WordPiece vocabulary offline, torch's DataLoader delivers batches with 0 and 2 worker
processes, and a supply point is a stored-like Measurement. Tiny data; no speed asserted."""

from __future__ import annotations

import io
import math
import pickle

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("tokenizers")

from chipfit.spec import TimingConfig  # noqa: E402
from chipfit.workloads import inputs  # noqa: E402

TINY = TimingConfig(warmup_s=0.005, min_block_s=0.001, budget_s=0.1, target_rel_ci=0.2)
IMAGES = inputs.ImageSpec(width=64, height=48, count=6, quality=80, seed=3)
TEXT = inputs.TextSpec(seq=32, count=12, vocab_words=300, seed=5)


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return inputs.make_jpegs(IMAGES)


def test_images_are_real_jpegs_of_the_stated_size_and_seeded(jpegs):
    from PIL import Image

    assert len(jpegs) == 6 and all(j[:2] == b"\xff\xd8" for j in jpegs)
    with Image.open(io.BytesIO(jpegs[0])) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 48))
    assert inputs.make_jpegs(IMAGES)[0] == jpegs[0] and jpegs[0] != jpegs[1]


def test_decoding_resizes_crops_and_normalises_like_imagenet(jpegs):
    import numpy as np
    from PIL import Image

    x = inputs.decode_image(jpegs[0], IMAGES)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    mean = np.asarray(inputs.IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(inputs.IMAGENET_STD, np.float32)[:, None, None]
    pixels = x * std + mean  # undo the normalisation: back in [0, 1]
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # the reference: shorter side 48 -> 256 (width 341), centre crop 224, /255
    with Image.open(io.BytesIO(jpegs[0])) as image:
        ref = image.convert("RGB").resize((341, 256), Image.Resampling.BILINEAR)
        ref = np.asarray(ref.crop((58, 16, 282, 240)), np.float32).transpose(2, 0, 1) / 255
    assert np.allclose(pixels, ref, atol=1e-5)


def test_grayscale_digits_get_the_mnist_transform():
    spec = inputs.ImageSpec(side=28, channels=1, width=28, height=28, count=1)
    x = inputs.decode_image(inputs.make_jpegs(spec)[0], spec)
    assert x.shape == (1, 28, 28)
    assert (x * 0.3081 + 0.1307).min() >= -1e-5


def test_the_tokenizer_is_built_offline_and_round_trips():
    tok = inputs.build_tokenizer(TEXT)
    vocab = inputs.vocabulary(TEXT)
    assert tok.get_vocab_size() == len(vocab) and vocab["[PAD]"] == 0
    text = "Bakuto zimo, rano fe! Hello there."
    enc = tok.encode(text)
    assert len(enc.ids) == 32 and enc.ids[0] == vocab["[CLS]"] and "[UNK]" not in enc.tokens
    assert tok.decode(enc.ids) == text.lower()
    docs = inputs.make_texts(TEXT)
    full = tok.encode(docs[0])
    assert len(full.ids) == 32 and "[UNK]" not in full.tokens


def test_datasets_pickle_for_spawned_workers():
    texts = inputs.text_dataset(TEXT)
    ids, mask = pickle.loads(pickle.dumps(texts))[3]
    assert ids.dtype == torch.int64 and ids.shape == (32,) and mask.shape == (32,)
    assert torch.equal(ids, texts[3][0])


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_delivers_every_sample_in_order(jpegs, workers):
    data = inputs.Images(jpegs, IMAGES)
    batches = iter(inputs.cycle_loader(data, batch=4, workers=workers))
    try:
        got = [next(batches) for _ in range(3)]
    finally:
        if workers:
            batches._shutdown_workers()
    assert all(x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 for x, _ in got)
    labels = torch.cat([y for _, y in got]).tolist()
    assert labels == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]  # 12 samples: the set, twice


def test_a_supply_point_is_a_measured_measurement():
    from chipfit.pipelines.feed import measure_supply, supply_of

    data = inputs.text_dataset(TEXT)
    m = measure_supply(data, "text", 4, 2, TINY, (("model", "bert-base"),))
    assert m.ok and m.source == "measured" and m.workload == "feed-text"
    assert (m.stack, m.items_per_call, m.dtype, m.meta["workers"]) == ("loader-2w", 4, "int64", "2")
    assert m.first_call_s > 0 and m.contended is not None and m.meta["model"] == "bert-base"
    s = supply_of(m)
    assert s.workers == 2 and s.low <= s.rate <= s.high


def test_the_api_measures_a_text_supply_and_keeps_it_in_the_store(tmp_path):
    import chipfit
    from chipfit.store import open_store

    with open_store(tmp_path / "h.sqlite3") as store:
        result = chipfit.feed("bert-base", 4, "0", [], samples=8, timing=TINY, store=store)
        stored = store.load_run(result.run.run_id)
    assert result.pipeline == "text" and "padded to 128 tokens" in result.describe
    (m,) = stored.measurements
    assert (m.workload, m.stack, m.size, m.source) == ("feed-text", "loader-0w", "4", "measured")
    assert stored.command == "feed" and stored.finished_at
    assert result.report.verdict == "none" and result.report.supplies[0].rate > 0


def test_a_loader_that_fails_is_a_failed_point_not_a_crash():
    from chipfit.pipelines.feed import measure_supply, supply_of

    class Broken:
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int):
            raise ValueError("this sample cannot be decoded")

    m = measure_supply(Broken(), "images", 2, 0, TINY)
    assert m.status == "error" and "cannot be decoded" in m.note and not m.ok
    assert math.isnan(supply_of(m).rate)
