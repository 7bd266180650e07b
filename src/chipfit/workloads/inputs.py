"""Input pipelines: the data a model is fed, made and prepared the way training and serving
code does it, so ``chipfit feed`` can time how fast this machine supplies samples.

Nothing is downloaded. Both datasets are generated here, seeded, and held in memory:

- **images**: smooth colour gradients, a few soft blobs and pixel noise (so JPEG has edges and
  texture to code, unlike flat or pure-noise images), encoded as JPEG at a stated quality and
  size (default 500x375), kept as bytes in memory. Preparing one sample is the ImageNet
  evaluation transform of the PyTorch examples (pytorch/examples, imagenet/main.py: resize
  the shorter side to 256, centre-crop 224, scale to [0, 1], normalise with the ImageNet
  channel means and standard deviations): JPEG decode and resize with Pillow, the arithmetic
  with numpy. For one-channel 28x28 models the MNIST transform of the same repository
  (mnist/main.py: mean 0.1307, std 0.3081) after a resize to the side.
- **text**: documents of pseudo-words drawn with Zipf-like frequencies, tokenised with a
  WordPiece tokenizer (the ``tokenizers`` package, BERT's normaliser and pre-tokeniser) whose
  vocabulary is built here from the generated word list: the most frequent words whole, every
  syllable as a ``##`` continuation piece, every character both ways, so any generated word
  tokenises without ``[UNK]``. Each sample is ``[CLS] ... [SEP]`` truncated and padded to
  the model's sequence length.

Reading files from disk or the network is not part of it: the encoded samples sit in memory,
so a measured rate is what decoding and tokenising allow, an upper bound for a pipeline that
also reads storage.

Datasets are picklable (the tokenizer travels as its JSON text and is rebuilt in each worker
process), so DataLoader workers started by fork, spawn or forkserver all get them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageSpec", "Images", "TextSpec", "Texts",
           "build_tokenizer", "cycle_loader", "decode_image", "image_dataset", "make_jpegs",
           "make_texts", "text_dataset", "vocabulary"]

# pytorch/examples imagenet/main.py (transforms.Normalize) and mnist/main.py.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
# ImageNet evaluation resizes the shorter side to 256 before the 224 centre crop.
RESIZE_OVER_CROP = 256 / 224

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class ImageSpec:
    """Generated JPEGs (``width`` x ``height`` at ``quality``) prepared to ``side`` x ``side``
    with ``channels`` (3: ImageNet transform; 1: MNIST transform)."""

    side: int = 224
    channels: int = 3
    width: int = 500
    height: int = 375
    quality: int = 90
    count: int = 64
    seed: int = 0

    @property
    def describe(self) -> str:
        colour = "RGB" if self.channels == 3 else "grayscale"
        crop = (f"resize shorter side to {self.resize_side}, centre-crop {self.side}"
                if self.resize_side != self.side else f"resize to {self.side}x{self.side}")
        return (f"{self.count} {colour} JPEGs {self.width}x{self.height} q{self.quality} in "
                f"memory; decode, {crop}, normalise to float32 {self.channels}x{self.side}x"
                f"{self.side}")

    @property
    def resize_side(self) -> int:
        return round(self.side * RESIZE_OVER_CROP) if self.channels == 3 else self.side


@dataclass(frozen=True)
class TextSpec:
    """Generated documents tokenised to ``seq`` tokens with a vocabulary of about
    ``vocab_words`` whole words (plus syllable and character pieces)."""

    seq: int = 128
    count: int = 256
    vocab_words: int = 8000
    seed: int = 0

    @property
    def describe(self) -> str:
        return (f"{self.count} generated documents in memory; WordPiece tokenizer built here "
                f"({self.vocab_words} whole words + pieces); [CLS] .. [SEP], truncated and "
                f"padded to {self.seq} tokens")


# ---- images ---------------------------------------------------------------------------------
def _picture(rng: Any, width: int, height: int, channels: int) -> Any:
    """A natural-ish image: per-channel gradients and soft blobs, drawn at 1/8 scale and
    enlarged (smooth regions, as photos have; and cheap), plus pixel noise; uint8 HxWxC."""
    import numpy as np
    from PIL import Image

    small_w, small_h = max(2, width // 8), max(2, height // 8)
    y, x = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    y /= small_h - 1
    x /= small_w - 1
    planes = []
    for _ in range(channels):
        plane = rng.uniform(-90, 90) * x + rng.uniform(-90, 90) * y + rng.uniform(60, 190)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            plane += rng.uniform(-70, 70) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        small = Image.fromarray(np.clip(plane, 0, 255).astype(np.uint8), "L")
        planes.append(np.asarray(small.resize((width, height), Image.Resampling.BICUBIC),
                                 dtype=np.float32))
    noise = rng.standard_normal((height, width, channels), dtype=np.float32) * 6.0
    pixels = np.stack(planes, axis=-1) + noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_jpegs(spec: ImageSpec) -> list[bytes]:
    """``spec.count`` seeded images encoded as JPEG bytes (Pillow, baseline, ``quality``)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(spec.seed)
    found = []
    for _ in range(spec.count):
        pixels = _picture(rng, spec.width, spec.height, spec.channels)
        image = Image.fromarray(pixels[..., 0] if spec.channels == 1 else pixels,
                                "L" if spec.channels == 1 else "RGB")
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=spec.quality)
        found.append(buf.getvalue())
    return found


def decode_image(data: bytes, spec: ImageSpec) -> Any:
    """One JPEG prepared for the model: float32 ``channels x side x side``, normalised."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB" if spec.channels == 3 else "L")
        w, h = image.size
        scale = spec.resize_side / min(w, h)
        if spec.resize_side == spec.side:  # MNIST-style: the whole image to side x side
            size = (spec.side, spec.side)
        else:
            size = (max(spec.side, round(w * scale)), max(spec.side, round(h * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - spec.side) // 2, (size[1] - spec.side) // 2
        image = image.crop((left, top, left + spec.side, top + spec.side))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if spec.channels == 3 else (MNIST_MEAN, MNIST_STD)
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


class Images:
    """A map-style dataset of encoded JPEGs; each item is decoded when it is asked for.

    A plain class: torch's DataLoader needs only ``__len__`` and ``__getitem__``, and
    ``import chipfit.workloads.inputs`` must not import torch."""

    def __init__(self, jpegs: Sequence[bytes], spec: ImageSpec) -> None:
        self.jpegs, self.spec = list(jpegs), spec

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        import torch

        return torch.from_numpy(decode_image(self.jpegs[index], self.spec)), index % 1000


def image_dataset(spec: ImageSpec) -> Images:
    """A map-style dataset of ``spec``'s generated JPEGs: (float tensor, label)."""
    return Images(make_jpegs(spec), spec)


# ---- text -----------------------------------------------------------------------------------
_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def _syllables() -> list[str]:
    return [c + v for c in _CONSONANTS for v in _VOWELS] + [
        c + v + e for c in _CONSONANTS[:8] for v in _VOWELS for e in "nrs"]


def _words(rng: Any, n: int) -> list[str]:
    """``n`` distinct pseudo-words of one to four syllables, most frequent first."""
    sylls = _syllables()
    seen: dict[str, None] = {}
    while len(seen) < n:
        parts = rng.integers(1, 5)
        seen.setdefault("".join(sylls[int(i)] for i in rng.integers(0, len(sylls), parts)))
    return list(seen)


def _zipf_weights(n: int) -> Any:
    import numpy as np

    weights = 1.0 / np.arange(1, n + 1) ** 1.07  # word frequencies fall like 1/rank (Zipf)
    return weights / weights.sum()


def make_texts(spec: TextSpec) -> list[str]:
    """``spec.count`` documents of generated words, between half and 1.3x ``spec.seq`` words
    long (some are padded, some truncated), in sentences with capitals and full stops."""
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    words = _words(rng, spec.vocab_words * 3)
    p = _zipf_weights(len(words))
    docs = []
    for _ in range(spec.count):
        length = int(rng.integers(max(1, spec.seq // 2), max(2, int(spec.seq * 1.3))))
        chosen = [words[int(i)] for i in rng.choice(len(words), size=length, p=p)]
        sentences, start = [], 0
        while start < length:
            end = min(length, start + int(rng.integers(5, 16)))
            sentence = " ".join(chosen[start:end])
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            start = end
        docs.append(" ".join(sentences))
    return docs


def vocabulary(spec: TextSpec) -> dict[str, int]:
    """WordPiece vocabulary: specials, characters (whole and ``##``), ``##`` syllables, and
    the ``spec.vocab_words`` most frequent generated words."""
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    chars = sorted(set(_CONSONANTS + _VOWELS + "aeiouqxy.,!?'-0123456789"))
    tokens = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    tokens += [f"##{s}" for s in _syllables()] + _syllables()
    tokens += _words(rng, spec.vocab_words * 3)[:spec.vocab_words]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def build_tokenizer(spec: TextSpec) -> Any:
    """A BERT-style WordPiece ``tokenizers.Tokenizer`` over :func:`vocabulary`, truncating and
    padding to ``spec.seq``; nothing is downloaded or trained."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = vocabulary(spec)
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]),
                                                 ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # so decoding leaves them out
    tok.enable_truncation(max_length=spec.seq)
    tok.enable_padding(length=spec.seq, pad_id=vocab["[PAD]"], pad_token="[PAD]")
    return tok


class Texts:
    """A map-style dataset of documents; each item is tokenised when it is asked for."""

    def __init__(self, texts: Sequence[str], tokenizer_json: str) -> None:
        self.texts, self.tokenizer_json = list(texts), tokenizer_json
        self._tok: Any = None

    def __len__(self) -> int:
        return len(self.texts)

    def __getstate__(self) -> dict[str, Any]:
        return {"texts": self.texts, "tokenizer_json": self.tokenizer_json, "_tok": None}

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch

        if self._tok is None:  # rebuilt once per process (a worker gets the JSON text)
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_str(self.tokenizer_json)
        enc = self._tok.encode(self.texts[index])
        return (torch.tensor(enc.ids, dtype=torch.int64),
                torch.tensor(enc.attention_mask, dtype=torch.int64))


def text_dataset(spec: TextSpec) -> Texts:
    """A map-style dataset of ``spec``'s documents: (input ids, attention mask)."""
    return Texts(make_texts(spec), build_tokenizer(spec).to_str())


# ---- the loader -----------------------------------------------------------------------------
class _Cycle:
    """Indices 0..n-1 over and over: a loader that never runs dry, so steady state can be
    timed as long as the timer wants (each epoch reshuffles nothing: order is fixed)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        i = 0
        while True:
            yield i % self.n
            i += 1


def cycle_loader(dataset: Any, batch: int, workers: int, prefetch: int = 2) -> Any:
    """A torch ``DataLoader`` over ``dataset`` that cycles forever: ``batch`` samples per
    batch, ``workers`` worker processes (0: in the calling process), default collation."""
    from torch.utils.data import DataLoader

    extra = {"prefetch_factor": prefetch} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch, sampler=_Cycle(len(dataset)),
                      num_workers=workers, **extra)
