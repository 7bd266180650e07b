"""Real networks from Hugging Face ``transformers`` configs, with random weights.

Every model is built from a configuration object (never ``from_pretrained``: nothing is
downloaded) with its library's own initialisation, seeded, so ResNet-50 here is the ResNet-50
architecture the seeds quote, not a hand-written look-alike. The size axis is the batch.

=============  ======================================================================
resnet50       ResNet-50 v1.5 (``ResNetConfig()`` defaults), 224x224 RGB, 1000 classes
bert-base      BERT-base uncased shape (12 layers, 768 wide, 30522 vocab), sequence 128,
               2-class sequence classification head
gpt2-small     GPT-2 small (124M: 12 layers, 768 wide, 50257 vocab), causal LM, 128 tokens
t5-small       T5-small (6+6 layers, 512 wide, 32128 vocab), 128 tokens in, 128 out
vit-base       ViT-Base/16 (12 layers, 768 wide), 224x224, 1000 classes
=============  ======================================================================

Modes (see :mod:`chipfit.workloads.training`): ``inference`` returns the logits; ``train`` and
``finetune`` compute the model's own loss (cross-entropy against random labels, or the
next-token loss for the language models) and take an SGD-with-momentum step. ``finetune``
trains only the head: the classifier of the vision models and BERT; the last block and final
norm of GPT-2 and of T5's decoder (their output projections are tied to the input
embeddings, so they are not a separate head).

Cost and memory come from :mod:`chipfit.cost.profile`: matrix FLOPs counted by chipfit's torch
cost tracer on one fake-tensor call of the exact function that is timed; bytes moved
under the eager no-reuse model (each operator reads its inputs and writes its outputs once);
memory from the simulated peak of live tensor bytes plus the weights and inputs.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from typing import Any

from chipfit.results import Cost
from chipfit.spec import MODES
from chipfit.workloads.base import Prepared, Workload, parse_count

__all__ = ["BertBase", "GPT2Small", "HFModel", "ResNet50", "T5Small", "ViTBase", "workloads"]

SEED = 0
LR = 1e-3


def _transformers() -> Any:
    """Import transformers with the Hub switched off (configs only; nothing to download)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import transformers
    except ImportError as exc:
        from chipfit.errors import UnsupportedError

        raise UnsupportedError(f"the model workloads need transformers ({exc}); install it "
                               "with: pip install 'chipfit[models]'") from None
    return transformers


@functools.lru_cache(maxsize=1)
def _template(name: str) -> Any:
    """The seeded, randomly initialised model ``name`` on the CPU, built once per process.

    Builds copy it (much faster than initialising 100M parameters again); one template is
    kept, since a plan runs every job of one workload before the next.
    """
    import torch

    from chipfit.workloads import get_workload

    workload = get_workload(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return workload.make_model()


class HFModel(Workload):
    """A ``transformers`` model built from its config; the size is the batch."""

    axis = "batch"
    modes = MODES
    default_sizes = ("1", "2", "4")
    quick_sizes = ("1",)
    #: Parameter-name prefixes trained in finetune mode.
    head: tuple[str, ...] = ("classifier",)
    input_note: str = ""

    # ---- what subclasses define -----------------------------------------------------------
    def make_model(self) -> Any:
        """A new ``nn.Module`` with this architecture (random weights)."""
        raise NotImplementedError

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:
        """Seeded CPU tensors for one call of ``batch`` samples in ``mode``."""
        raise NotImplementedError

    def forward(self, mode: str) -> Callable[..., Any]:
        """``forward(model, *inputs)``: logits in inference, the model's output with a loss
        otherwise."""
        raise NotImplementedError

    # ---- cost and memory ------------------------------------------------------------------
    def profile(self, size: str, dtype: str, mode: str) -> Any:
        """The counted FLOPs, bytes and memory of one call (cached)."""
        import torch

        from chipfit.cost.profile import profile_torch

        batch = parse_count(size)
        return profile_torch(
            (self.name, size, dtype, mode), self.make_model,
            lambda: self.make_inputs(batch, mode),
            lambda model: self.model_call(model, mode, dtype, torch.device("cpu")), batch)

    def cost(self, size: str, dtype: str, mode: str = "inference") -> Cost:
        """FLOPs counted by the torch cost tracer; bytes from the eager traffic model; host<->device
        bytes are the inputs in and the output (logits, or the scalar loss) out."""
        found = self.profile(size, dtype, mode)
        return Cost(flops=found.flops, bytes_moved=found.bytes_moved,
                    transfer_bytes=float(found.input_bytes + found.output_bytes),
                    kernels=found.kernels)

    def memory_estimate(self, size: str, dtype: str, mode: str = "inference") -> int | None:
        """Weights + inputs + the simulated peak of live tensors (+ momentum when training)."""
        return self.profile(size, dtype, mode).memory_bytes(mode)

    # ---- builders -------------------------------------------------------------------------
    def model_call(self, model: Any, mode: str, dtype: str, device: Any) -> Callable[..., Any]:
        """The function timed for ``mode``: ``fn(*inputs)`` runs one call of ``model``."""
        from chipfit.workloads.training import torch_model_call

        return torch_model_call(model, mode, dtype, device, loss=_model_loss, head=self.head,
                                lr=LR, forward=self.forward(mode))

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        from chipfit.workloads.training import prepared

        batch = parse_count(size)
        model = copy.deepcopy(_template(self.name))
        fn = self.model_call(model, mode, dtype, session.handle)
        return prepared(fn, self.make_inputs(batch, mode), model, batch, mode,
                        extra=(("input", self.input_note),))


    def inference_module(self, size: str) -> tuple[Any, tuple[Any, ...], int, tuple[tuple[str, str], ...]]:
        from chipfit.workloads.stacks import forward_module
        from chipfit.workloads.training import count_params, model_bytes

        batch = parse_count(size)
        model = copy.deepcopy(_template(self.name)).eval()
        details = (("params", str(count_params(model))), ("trainable_params", "0"),
                   ("model_bytes", str(model_bytes(model))), ("input", self.input_note))
        return (forward_module(model, self.forward("inference")),
                self.make_inputs(batch, "inference"), batch, details)


def _model_loss(output: Any) -> Any:
    return output.loss


def _generator(mode: str) -> Any:
    import torch

    return torch.Generator().manual_seed(SEED + 1 + MODES.index(mode))


def _with_labels(inputs: Any, classes: int, mode: str, gen: Any) -> tuple[Any, ...]:
    """``(inputs,)`` for inference; with random class labels, one per sample, for training."""
    import torch

    if mode == "inference":
        return (inputs,)
    return inputs, torch.randint(0, classes, (inputs.shape[0],), generator=gen)


class _ImageClassifier(HFModel):
    family = "vision"
    side = 224
    classes = 1000
    input_note = "3x224x224 image"
    tokens = 0  # pixels (ViT's patches are never padding)

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:
        import torch

        gen = _generator(mode)
        return _with_labels(torch.randn(batch, 3, self.side, self.side, generator=gen),
                            self.classes, mode, gen)

    def forward(self, mode: str) -> Callable[..., Any]:
        if mode == "inference":
            return lambda model, images: model(pixel_values=images).logits
        return lambda model, images, labels: model(pixel_values=images, labels=labels)


class ResNet50(_ImageClassifier):
    name = "resnet50"
    family = "cnn"
    description = ("ResNet-50 (transformers ResNetConfig defaults), 224x224 images, 1000 classes; "
                   "size = batch")

    def make_model(self) -> Any:
        tf = _transformers()
        return tf.ResNetForImageClassification(tf.ResNetConfig(num_labels=self.classes))


class ViTBase(_ImageClassifier):
    name = "vit-base"
    family = "transformer"
    description = "ViT-Base/16, 224x224 images (197 tokens), 1000 classes; size = batch"

    def make_model(self) -> Any:
        tf = _transformers()
        return tf.ViTForImageClassification(tf.ViTConfig(num_labels=self.classes))


class _TokenModel(HFModel):
    family = "transformer"
    seq = 128
    tokens = seq  # every input a window of seq tokens
    vocab = 0

    def _tokens(self, batch: int, gen: Any) -> Any:
        import torch

        return torch.randint(0, self.vocab, (batch, self.seq), generator=gen)


class BertBase(_TokenModel):
    name = "bert-base"
    description = ("BERT-base (12 layers, 768 wide), sequence 128, sequence classification; "
                   "size = batch")
    vocab, classes = 30522, 2
    input_note = "128 tokens"

    def make_model(self) -> Any:
        tf = _transformers()
        config = tf.BertConfig(vocab_size=self.vocab, num_labels=self.classes)
        return tf.BertForSequenceClassification(config)

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:

        gen = _generator(mode)
        return _with_labels(self._tokens(batch, gen), self.classes, mode, gen)

    def forward(self, mode: str) -> Callable[..., Any]:
        if mode == "inference":
            return lambda model, tokens: model(input_ids=tokens).logits
        return lambda model, tokens, labels: model(input_ids=tokens, labels=labels)


class GPT2Small(_TokenModel):
    name = "gpt2-small"
    description = ("GPT-2 small (124M: 12 layers, 768 wide), causal language model over 128 "
                   "tokens; size = batch")
    vocab = 50257
    layers = 12
    head = (f"transformer.h.{layers - 1}", "transformer.ln_f")
    input_note = "128 tokens"

    def make_model(self) -> Any:
        tf = _transformers()
        config = tf.GPT2Config(vocab_size=self.vocab, n_layer=self.layers, n_positions=1024,
                               n_embd=768, n_head=12, use_cache=False)
        model = tf.GPT2LMHeadModel(config)
        # The loss GPT2LMHeadModel falls back to anyway; naming it skips a logged warning.
        model.loss_type = "ForCausalLM"
        return model

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:
        return (self._tokens(batch, _generator(mode)),)

    def forward(self, mode: str) -> Callable[..., Any]:
        if mode == "inference":
            return lambda model, tokens: model(input_ids=tokens).logits
        # The next-token loss: transformers shifts the labels by one inside the model.
        return lambda model, tokens: model(input_ids=tokens, labels=tokens)


class T5Small(_TokenModel):
    name = "t5-small"
    description = ("T5-small sequence-to-sequence (6+6 layers, 512 wide), 128 tokens in, 128 "
                   "out; size = batch")
    vocab = 32128
    layers = 6
    head = (f"decoder.block.{layers - 1}", "decoder.final_layer_norm")
    input_note = "128 tokens in, 128 out"

    def make_model(self) -> Any:
        tf = _transformers()
        config = tf.T5Config(vocab_size=self.vocab, d_model=512, d_kv=64, d_ff=2048,
                             num_layers=self.layers, num_heads=8, use_cache=False,
                             pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        return tf.T5ForConditionalGeneration(config)

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:
        gen = _generator(mode)
        return self._tokens(batch, gen), self._tokens(batch, gen)

    def forward(self, mode: str) -> Callable[..., Any]:
        if mode == "inference":  # one decoder pass over the whole target (teacher forcing)
            return lambda model, source, target: model(input_ids=source,
                                                       decoder_input_ids=target).logits
        return lambda model, source, target: model(input_ids=source, labels=target)


def workloads() -> list[Workload]:
    return [ResNet50(), BertBase(), GPT2Small(), T5Small(), ViTBase()]
