"""The speech model: a tiny temporal CNN over a window of normalised MFCC frames (torch).

Input ``[batch, context_frames, numcep]`` (normalised MFCC, as the runtime feeds it); output
``[batch, outputs]`` speech probabilities for the hops at the window's end. Cepstral coefficients
are the channels of 1-D convolutions over time (as in TC-ResNet / keyword-spotting CNNs on MFCC);
the first convolution is strided, so a long context costs few multiplies. A second copy of the
input with the window's own mean removed (per-window cepstral mean normalisation, one ReduceMean
and one Sub in ONNX) gives the network level- and channel-independent features next to the
absolute ones (which it needs to call digital silence silence).
"""

from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Architecture; stored in the checkpoint and the model card."""

    numcep: int = 13
    context_frames: int = 40
    outputs: int = 2
    channels: tuple[int, ...] = (16, 32, 32)
    kernels: tuple[int, ...] = (5, 3, 3)
    strides: tuple[int, ...] = (2, 2, 2)
    hidden: int = 32
    window_cmn: bool = True

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "NetConfig":
        data = dict(data)
        for key in ("channels", "kernels", "strides"):
            data[key] = tuple(data[key])
        return cls(**data)

    def lengths(self) -> list[int]:
        """Time length after each convolution (no padding)."""
        n = self.context_frames
        out = []
        for k, s in zip(self.kernels, self.strides):
            n = (n - k) // s + 1
            if n < 1:
                raise ValueError(f"context_frames {self.context_frames} too short for kernels {self.kernels}")
            out.append(n)
        return out

    def multiplies(self) -> int:
        """Multiply-accumulates of one inference (convolutions and linear layers; BN folds away)."""
        total = 0
        c_in = self.numcep * (2 if self.window_cmn else 1)
        for c_out, k, n in zip(self.channels, self.kernels, self.lengths()):
            total += n * c_out * c_in * k
            c_in = c_out
        flat = c_in * self.lengths()[-1]
        total += flat * self.hidden + self.hidden * self.outputs
        return total


class VadNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.numcep * (2 if cfg.window_cmn else 1)
        for c_out, k, s in zip(cfg.channels, cfg.kernels, cfg.strides):
            layers += [nn.Conv1d(c_in, c_out, k, stride=s, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.flat = c_in * cfg.lengths()[-1]
        self.fc = nn.Sequential(nn.Linear(self.flat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.outputs))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [B, numcep, T]
        if self.cfg.window_cmn:
            x = torch.cat([x, x - x.mean(dim=2, keepdim=True)], dim=1)
        x = self.convs(x)
        return self.fc(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
