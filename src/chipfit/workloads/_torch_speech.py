"""The CTC speech recogniser as torch modules (imported only when a torch builder runs).

Parameter names are the keys of the shared numpy weights (``speech.SpeechCTC.init_weights``):
``lstm.*`` as ``nn.LSTM`` names them (``*_reverse`` for the backward direction), ``head.*``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLANK", "CTCRecognizer", "GreedyCTC", "WithCTCLoss", "greedy_ctc"]

BLANK = 0  # CTC's blank is class 0; targets use 1.. and pad with 0


class CTCRecognizer(nn.Module):
    """Stacked bidirectional LSTM over (batch, frames, features) -> per-frame class logits."""

    def __init__(self, features: int, hidden: int, layers: int, classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True,
                            bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out)


def greedy_ctc(logits: torch.Tensor, blank: int = BLANK) -> tuple[torch.Tensor, torch.Tensor]:
    """Best path decoding on the device: the most likely class per frame, repeats collapsed,
    blanks dropped. Returns ``(ids, lengths)``: each row's kept ids packed to the left (padded
    with ``blank``) and how many there are."""
    best = logits.argmax(-1)
    prev = F.pad(best[:, :-1], (1, 0), value=blank)
    keep = (best != blank) & (best != prev)
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    ids = best.gather(1, order).masked_fill(~keep.gather(1, order), blank)
    return ids, keep.sum(1)


class GreedyCTC(nn.Module):
    """``net`` followed by greedy CTC decoding: what recognition at inference runs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return greedy_ctc(self.net(x))


class WithCTCLoss(nn.Module):
    """``net`` plus the CTC loss against padded targets (``blank`` marks the padding):
    ``nn.CTCLoss``'s mean reduction, each utterance's loss over its target length, averaged."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> Any:
        logits = self.net(x)
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (frames, batch, C)
        frames = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        lengths = (targets != BLANK).sum(1)
        return F.ctc_loss(log_probs, targets, frames, lengths, blank=BLANK, reduction="mean")
