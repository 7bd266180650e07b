"""The small networks as torch modules (imported only when a torch builder runs).

Each module keeps its classifier in ``head`` so finetune mode can freeze everything else;
parameter names are the keys of the shared numpy weights (``nets.Net.init_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CNN", "MLP", "EncoderClassifier", "SpeechLSTM", "WithLoss", "load_weights"]


class MLP(nn.Module):
    """Linear+ReLU layers through ``dims[:-1]``, then a linear head to ``dims[-1]`` classes."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(dims[:-2], dims[1:-1], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-2], dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class CNN(nn.Module):
    """Two 3x3 conv+ReLU+2x2 max-pool stages, a dense layer, and a linear head."""

    def __init__(self, channels: Sequence[int], side: int, hidden: int, classes: int) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c0, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(c2 * (side // 4) ** 2, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc(self.features(x).flatten(1))))


class SpeechLSTM(nn.Module):
    """Stacked LSTM over (batch, frames, features); the head classifies the last frame's state."""

    def __init__(self, features: int, hidden: int, layers: int, classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class EncoderClassifier(nn.Module):
    """One post-norm Transformer encoder block (no dropout), mean-pooled, then a linear head."""

    def __init__(self, d_model: int, heads: int, ff: int, classes: int) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).mean(dim=1))


class WithLoss(nn.Module):
    """``net`` plus cross-entropy against integer labels: what a supervised train step runs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.net(x), labels)


def load_weights(module: nn.Module, weights: dict[str, np.ndarray]) -> Any:
    """Load numpy ``weights`` into ``module``; every name must match (strict)."""
    state = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in weights.items()}
    module.load_state_dict(state, strict=True)
    return module
