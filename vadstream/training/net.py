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

from vadstream.stages.model import StateSpec


class _JsonConfig:
    """A frozen dataclass of sizes stored as JSON in the checkpoint and the training report."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict):
        """The config from its JSON form (lists back to the tuples the fields hold)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclasses.dataclass(frozen=True)
class NetConfig(_JsonConfig):
    """Architecture; stored in the checkpoint and the model card."""

    numcep: int = 13
    context_frames: int = 40
    outputs: int = 2
    channels: tuple[int, ...] = (16, 32, 32)
    kernels: tuple[int, ...] = (5, 3, 3)
    strides: tuple[int, ...] = (2, 2, 2)
    hidden: int = 32
    window_cmn: bool = True
    local_frames: int | None = None  # convolve only the last N frames (None: the whole window)
    global_stats: bool = False  # mean/min/max of each coefficient over the whole window -> FC


    @property
    def conv_frames(self) -> int:
        return self.local_frames or self.context_frames

    def lengths(self) -> list[int]:
        """Time length after each convolution (no padding)."""
        n = self.conv_frames
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
        flat = c_in * self.lengths()[-1] + (3 * self.numcep if self.global_stats else 0)
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
        self.flat = c_in * cfg.lengths()[-1] + (3 * cfg.numcep if cfg.global_stats else 0)
        self.fc = nn.Sequential(nn.Linear(self.flat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.outputs))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = x.transpose(1, 2)  # [B, numcep, T]
        mean = x.mean(dim=2, keepdim=True)
        local = x[:, :, -cfg.local_frames:] if cfg.local_frames else x
        if cfg.window_cmn:
            local = torch.cat([local, local - mean], dim=1)
        h = self.convs(local).flatten(1)
        if cfg.global_stats:
            h = torch.cat([h, mean.flatten(1), x.amin(dim=2), x.amax(dim=2)], dim=1)
        return self.fc(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ExportNet(nn.Module):
    """The same function as a trained :class:`VadNet` (eval mode), rearranged for fast inference.

    ONNX Runtime's cost at this size is mostly per operator, so export folds what it can:
    BatchNorm into the convolutions; the per-window mean removal into the first convolution
    (conv over [x, x - mean] = conv_(W1+W2)(x) - conv_W2(mean), and conv_W2(mean) is one
    full-window convolution of x); the input transpose into 2-D convolutions whose kernels span
    all cepstra ([B, 1, T, numcep], an Unsqueeze instead of a Transpose). Global statistics and
    local windows are not supported here (VadNet is used as is for those).
    """

    def __init__(self, net: VadNet):
        super().__init__()
        cfg = net.cfg
        if cfg.global_stats or cfg.local_frames:
            raise ValueError("ExportNet supports whole-window convolutions without global statistics")
        self.cfg = cfg
        convs = [m for m in net.convs if isinstance(m, nn.Conv1d)]
        bns = [m for m in net.convs if isinstance(m, nn.BatchNorm1d)]
        numcep, t = cfg.numcep, cfg.context_frames
        scales, shifts = [], []
        for bn in bns:
            a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            scales.append(a)
            shifts.append(bn.bias.detach() - a * bn.running_mean)
        w0 = convs[0].weight.detach()  # [C, numcep * (2 if cmn), k]
        a0 = scales[0]
        k0, s0 = cfg.kernels[0], cfg.strides[0]
        first = nn.Conv2d(1, w0.shape[0], (k0, numcep), stride=(s0, 1), bias=True)
        if cfg.window_cmn:
            w1, w2 = w0[:, :numcep], w0[:, numcep:]
            fused = w1 + w2
            corr = nn.Conv2d(1, w0.shape[0], (t, numcep), bias=False)
            # conv_W2(mean) at any position = sum_i (sum_k W2[c,i,k]) * mean_i, mean_i = sum_t x[t,i] / T
            s = w2.sum(dim=2)  # [C, numcep]
            corr.weight.data = (a0[:, None] * s / t)[:, None, None, :].expand(-1, 1, t, -1).clone()
            self.corr = corr
        else:
            fused = w0
            self.corr = None
        first.weight.data = (a0[:, None, None] * fused).permute(0, 2, 1)[:, None].clone()  # [C,1,k,numcep]
        first.bias.data = shifts[0].clone()
        self.first = first
        rest = []
        for conv, a, b in zip(convs[1:], scales[1:], shifts[1:]):
            c = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, bias=True)
            c.weight.data = a[:, None, None] * conv.weight.detach()
            c.bias.data = b.clone()
            rest += [c, nn.ReLU()]
        self.rest = nn.Sequential(*rest)
        self.fc = net.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # [B, 1, T, numcep]
        h = self.first(x)  # [B, C, L, 1]
        if self.corr is not None:
            h = h - self.corr(x)  # [B, C, 1, 1] broadcast over L
        h = torch.relu(h).squeeze(3)
        h = self.rest(h)
        return torch.sigmoid(self.fc(h.flatten(1)))


# ----------------------------------------------------------------------------- streaming network (4.0)

@dataclasses.dataclass(frozen=True)
class StreamNetConfig(_JsonConfig):
    """A causal network over MFCC frames that keeps its context as state (model 4.0).

    Causal 1-D convolutions (cepstra as channels, time as length, ``dilations`` spreading the
    receptive field) and an optional GRU of ``gru`` units, then a per-frame classifier: one
    probability per frame, each seeing only that frame and the ones before it. The training
    graph starts every stream with one virtual zero frame (its output dropped) and pads every
    convolution on the left with zeros; the streaming export carries each convolution's input
    frames and the GRU's hidden vector as ONNX state, zeros at a stream's start, so feeding
    frames in pieces gives the same function. (The virtual frame is what lets every streaming
    call recompute the last frame of the call before, see :class:`StreamExport`.)
    """

    numcep: int = 13
    channels: tuple[int, ...] = (32, 32)
    kernels: tuple[int, ...] = (5, 3)
    dilations: tuple[int, ...] = (1, 1)
    gru: int = 48  # GRU units on top of the convolutions (0: none, a per-frame MLP instead)
    hidden: int = 32  # the MLP's width when gru == 0
    residual: bool = True  # add a layer's input to its output where the channel counts match

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.kernels) == len(self.dilations)) or not self.channels:
            raise ValueError("channels, kernels and dilations need one value per convolution")
        if min(self.kernels) < 2 or min(self.dilations) < 1:
            raise ValueError("kernels must be >= 2 and dilations >= 1 (every convolution carries state)")


    @property
    def receptive_field_frames(self) -> int:
        """Frames the convolutions see (the GRU's memory comes on top of this)."""
        return 1 + sum((k - 1) * d for k, d in zip(self.kernels, self.dilations))

    def state_lengths(self) -> list[int]:
        return [(k - 1) * d for k, d in zip(self.kernels, self.dilations)]

    def input_channels(self) -> list[int]:
        return [self.numcep, *self.channels[:-1]]

    def multiplies_per_frame(self) -> int:
        total = sum(c_out * c_in * k for c_in, c_out, k in zip(self.input_channels(), self.channels, self.kernels))
        c = self.channels[-1]
        if self.gru:
            total += 3 * self.gru * (c + self.gru) + self.gru
        else:
            total += c * self.hidden + self.hidden
        return total


class StreamNet(nn.Module):
    """Training graph of :class:`StreamNetConfig`: ``[batch, frames, numcep]`` -> ``[batch, frames]``."""

    def __init__(self, cfg: StreamNetConfig):
        super().__init__()
        self.cfg = cfg
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for c_in, c_out, k, d in zip(cfg.input_channels(), cfg.channels, cfg.kernels, cfg.dilations):
            self.convs.append(nn.Conv1d(c_in, c_out, k, dilation=d, bias=False))
            self.bns.append(nn.BatchNorm1d(c_out))
        c = cfg.channels[-1]
        if cfg.gru:
            self.gru = nn.GRU(c, cfg.gru)
            self.fc = nn.Linear(cfg.gru, 1)
        else:
            self.gru = None
            self.fc = nn.Sequential(nn.Linear(c, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))

    def _residual(self, i: int) -> bool:
        return self.cfg.residual and self.cfg.input_channels()[i] == self.cfg.channels[i]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.pad(x.transpose(1, 2), (1, 0))  # [B, numcep, 1 + T]: the virtual zero frame first
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = torch.relu(bn(conv(nn.functional.pad(h, (self.cfg.state_lengths()[i], 0)))))
            h = h + y if self._residual(i) else y
        z = h.permute(2, 0, 1)  # [1 + T, B, C]
        if self.gru is not None:
            z, _ = self.gru(z)
        return self.fc(z[1:]).squeeze(2).transpose(0, 1)  # [B, T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def state_specs(cfg: StreamNetConfig) -> tuple[StateSpec, ...]:
    """The state tensors of the streaming graph (input name, output name, shape), in order."""
    lengths = cfg.state_lengths()
    lengths[0] += 1  # the first convolution also carries the last input frame (recomputed each call)
    out = [StateSpec(f"state_conv{i}", f"state_conv{i}_out", (1, c_in, n))
           for i, (c_in, n) in enumerate(zip(cfg.input_channels(), lengths))]
    if cfg.gru:
        out.append(StateSpec("state_gru", "state_gru_out", (1, 1, cfg.gru)))
    return tuple(out)


class StreamExport(nn.Module):
    """The streaming graph of a trained :class:`StreamNet` (eval mode), BatchNorm folded away.

    ``forward(features [1, n, numcep], *states) -> (speech_prob [1, n], *next_states)``. Every call
    recomputes the last frame of the call before next to its n new frames, so each operator works
    on at least two positions: ONNX Runtime's kernels for a single position (a GEMV) round
    differently from those for several, and with this the numbers are the same bit for bit
    whether frames come one per call or many. State: the first convolution's last
    ``(kernel - 1) * dilation + 1`` input frames; every other convolution's
    ``(kernel - 1) * dilation`` input frames before the recomputed one; the GRU's hidden vector
    before the recomputed frame. With zero states at the start this is :class:`StreamNet` (whose
    virtual zero frame is the first call's recomputed one) on the whole signal."""

    def __init__(self, net: StreamNet):
        super().__init__()
        cfg = net.cfg
        self.cfg = cfg
        self.convs = nn.ModuleList()
        for conv, bn in zip(net.convs, net.bns):
            a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            c = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, dilation=conv.dilation, bias=True)
            c.weight.data = a[:, None, None] * conv.weight.detach()
            c.bias.data = bn.bias.detach() - a * bn.running_mean
            self.convs.append(c)
        self.residual = [net._residual(i) for i in range(len(net.convs))]
        self.lengths = cfg.state_lengths()
        self.gru = net.gru
        self.fc = net.fc
        self.width = cfg.gru or cfg.channels[-1]

    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        # Written for a short ONNX graph (per-operator cost dominates at this size): constant
        # slices for the next states, 2-D Gemm for the classifier, one final Reshape.
        buf = torch.cat([states[0], x.transpose(1, 2)], dim=2)  # [1, numcep, L0 + 1 + n]
        new_states = [buf[:, :, -(self.lengths[0] + 1):]]
        h = buf[:, :, self.lengths[0]:]  # the n + 1 positions computed: the recomputed frame, the new ones
        for i, conv in enumerate(self.convs):
            if i:
                buf = torch.cat([states[i], h], dim=2)
                new_states.append(buf[:, :, -(self.lengths[i] + 1):-1])
            y = torch.relu(conv(buf))
            h = h + y if self.residual[i] else y
        z = h.permute(2, 0, 1)  # [n + 1, 1, C]
        if self.gru is not None:
            z, _ = self.gru(z, states[len(self.convs)])
            new_states.append(z[-2:-1])  # the hidden vector before the last frame, recomputed next call
        p = torch.sigmoid(self.fc(z[1:].reshape(-1, self.width)))  # [n, 1]
        return (p.reshape(1, -1), *new_states)
