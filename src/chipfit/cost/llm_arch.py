"""A decoder-only language model's shape: the value every LLM estimate is computed from.

Built by :func:`chipfit.workloads.llm.arch_from_config` from a transformers config (or a
built-in); sized by :mod:`chipfit.analysis.llm`, which takes values and imports no workload.
"""

from __future__ import annotations

from dataclasses import dataclass

from chipfit.errors import InvalidInputError

__all__ = ["LlmArch"]


@dataclass(frozen=True)
class LlmArch:
    """A decoder-only transformer's shape: everything memory and FLOPs depend on."""

    name: str
    family: str  # the transformers model_type: llama, mistral, qwen2, mixtral, gpt2 ...
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool = True  # SwiGLU/GeGLU: three matrices; GELU/ReLU MLPs have two
    experts: int = 1
    experts_per_token: int = 1
    tied_embeddings: bool = False
    learned_positions: int = 0  # GPT-2/OPT learned position table rows (0: rotary)
    bias: bool = False  # biases on the projections (GPT-2, OPT, GPT-J, Qwen2 q/k/v)
    max_context: int = 0
    source: str = ""  # where the figures come from

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate",
                     "vocab", "experts", "experts_per_token"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"model {self.name!r}: {name} must be positive")
        if self.heads % self.kv_heads:
            raise InvalidInputError(f"model {self.name!r}: heads ({self.heads}) must be a "
                                    f"multiple of kv_heads ({self.kv_heads})")

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.gated_mlp else 2

    @property
    def attn_params(self) -> int:
        """Q, K, V and O projections of one layer."""
        q_o = 2 * self.hidden * self.heads * self.head_dim
        return q_o + 2 * self.hidden * self.kv_heads * self.head_dim

    @property
    def expert_params(self) -> int:
        return self.mlp_matrices * self.hidden * self.intermediate

    @property
    def layer_params(self) -> int:
        router = self.hidden * self.experts if self.experts > 1 else 0
        return self.attn_params + self.experts * self.expert_params + router + 2 * self.hidden

    @property
    def linear_params(self) -> int:
        """Parameters of the decoder layers' matrices (what weight quantisation shrinks)."""
        return self.layers * (self.attn_params + self.experts * self.expert_params)

    @property
    def embedding_params(self) -> int:
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.vocab * self.hidden + head + self.learned_positions * self.hidden

    @property
    def params(self) -> int:
        """All parameters (biases of biased models included approximately: one per output)."""
        bias = self.layers * (self.heads + 2 * self.kv_heads) * self.head_dim if self.bias else 0
        return self.layers * self.layer_params + self.embedding_params + self.hidden + bias

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (MoE: only its routed experts)."""
        idle = (self.experts - self.experts_per_token) * self.expert_params * self.layers
        return self.params - idle
