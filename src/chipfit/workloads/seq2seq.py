"""Sequence-to-sequence as users run it: the encoder once, then greedy decoding with a KV cache.

``t5-small-generate`` is the ``t5-small`` architecture (random weights, built from its config)
doing what a translation or summarisation service does with it: encode 128 source tokens,
then generate 32 tokens one at a time, each decoder step attending to the cached keys and
values of the earlier steps (self-attention) and of the source (cross-attention, computed once),
and taking the most likely token (greedy). Exactly 32 tokens are generated every time (no
stopping at an end-of-sequence token), as benchmarks fix the output length, so every call does
the same work. The size axis is the batch (sequences generated together); one timed call is
one whole generation, so the time per generated token, the encoder's share included, is the
call's time over ``generated_tokens`` (a detail of every measurement).

:func:`greedy_generate_seq2seq` runs the same loop with each step timed apart, fenced with the
session's ``wait`` (any device), as :func:`chipfit.workloads.llm.greedy_generate` does for
decoder-only models: ``prefill_s`` is the encoder pass plus the first decoder step,
``step_s`` each later step. :func:`no_cache_greedy_seq2seq` is the reference without a cache
(the whole decoder re-run over every token so far at each step), for checking the cached loop.

Cost and memory come from :mod:`chipfit.cost.profile` like the other transformers models: the
whole generation loop, counted on fake tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

from chipfit.errors import UnsupportedError
from chipfit.workloads.base import Prepared, Workload, parse_count
from chipfit.workloads.llm import Generation
from chipfit.workloads.models import T5Small, _generator

__all__ = ["T5SmallGenerate", "greedy_generate_seq2seq", "no_cache_greedy_seq2seq", "workloads"]


def _greedy_tokens(model: Any, source: Any, gen_len: int) -> Iterator[Any]:
    """Yield the ``(batch, 1)`` next-token ids of ``gen_len`` greedy decoder steps.

    The first ``next()`` runs the encoder and the first decoder step; the encoder output and
    the cache are kept for the later steps.
    """
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    config = model.config
    cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
    encoded = model.get_encoder()(input_ids=source)
    nxt = torch.full((source.shape[0], 1), config.decoder_start_token_id, dtype=torch.long,
                     device=source.device)
    for _ in range(gen_len):
        logits = model(encoder_outputs=encoded, decoder_input_ids=nxt, cache=cache,
                       use_cache=True).logits
        nxt = logits[:, -1, :].argmax(-1, keepdim=True)
        yield nxt


def generate_ids(model: Any, source: Any, gen_len: int) -> Any:
    """The ``(batch, gen_len)`` greedy ids: what one timed call of the workload computes."""
    import torch

    return torch.cat(list(_greedy_tokens(model, source, gen_len)), dim=1)


def greedy_generate_seq2seq(model: Any, source: Any, gen_len: int,
                            wait: Callable[[Any], None] = lambda _: None,
                            clock: Callable[[], float] = time.perf_counter) -> Generation:
    """Encode ``source`` (batch x tokens) and decode ``gen_len`` tokens greedily with the KV
    cache, each step timed apart; ``wait(out)`` fences the device (a session's ``wait``)."""
    import torch

    steps: list[float] = []
    out: list[Any] = []
    with torch.inference_mode():
        tokens = _greedy_tokens(model, source, gen_len)
        for _ in range(gen_len):
            t0 = clock()
            nxt = next(tokens)
            wait(nxt)
            steps.append(clock() - t0)
            out.append(nxt)
    ids = torch.cat(out, dim=1).tolist()
    return Generation(tuple(tuple(r) for r in ids), steps[0], tuple(steps[1:]))


def no_cache_greedy_seq2seq(model: Any, source: Any, gen_len: int) -> list[list[int]]:
    """The same greedy decode without a cache: the whole model over every token so far."""
    import torch

    ids = torch.full((source.shape[0], 1), model.config.decoder_start_token_id,
                     dtype=torch.long, device=source.device)
    with torch.inference_mode():
        for _ in range(gen_len):
            logits = model(input_ids=source, decoder_input_ids=ids, use_cache=False).logits
            ids = torch.cat([ids, logits[:, -1, :].argmax(-1, keepdim=True)], dim=1)
    return ids[:, 1:].tolist()


class T5SmallGenerate(T5Small):
    """T5-small greedy generation with a KV cache: 128 tokens in, 32 generated."""

    name = "t5-small-generate"
    description = ("T5-small greedy generation with a KV cache (encoder once, 32 decoder "
                   "steps), 128 tokens in, 32 out; size = batch")
    modes = ("inference",)
    gen_len = 32

    @property
    def input_note(self) -> str:  # type: ignore[override]
        return f"{self.seq} tokens in, {self.gen_len} generated"

    def make_model(self) -> Any:
        model = super().make_model()
        model.config.use_cache = True
        return model

    def make_inputs(self, batch: int, mode: str) -> tuple[Any, ...]:
        return (self._tokens(batch, _generator(mode)),)

    def forward(self, mode: str) -> Callable[..., Any]:
        return functools.partial(generate_ids, gen_len=self.gen_len)

    def _build_torch(self, size: str, dtype: str, mode: str, session: Any) -> Prepared:
        built = super()._build_torch(size, dtype, mode, session)
        return dataclasses.replace(built, details=built.details + (
            ("generated_tokens", str(self.gen_len)),))

    def inference_module(self, size: str) -> tuple[Any, tuple[Any, ...], int, tuple[tuple[str, str], ...]]:
        raise UnsupportedError(f"{self.name} is a generation loop; the stacks other than eager "
                               "take one forward pass (use t5-small)")

    def generation(self, size: str, session: Any, dtype: str = "float32") -> Generation:
        """One greedy generation of ``size`` sequences on ``session``'s device, each step timed
        (after one untimed warm-up generation): the per-token view of a measurement."""
        import copy

        import torch

        from chipfit.workloads.models import _template
        from chipfit.workloads.training import autocast

        model = copy.deepcopy(_template(self.name)).to(session.handle).eval()
        source = session.to_device(self.make_inputs(parse_count(size), "inference")[0])
        with autocast(torch, session.handle.type, dtype):
            greedy_generate_seq2seq(model, source, self.gen_len, session.wait)
            return greedy_generate_seq2seq(model, source, self.gen_len, session.wait)


def workloads() -> list[Workload]:
    return [T5SmallGenerate()]
