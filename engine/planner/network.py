"""The planner's network: what is seen, where, and when it would sound, frame by frame.

From frames at a fixed rate (24 per second by default, enough to place an impact within a frame,
~42 ms) it predicts, for every known sound class and every frame:

- ``present``: the class's source is visible in this frame (logit);
- ``event``: a sound event (impact, tick, step, chirp, flare) happens at this frame (logit);
- ``x``: the source's horizontal position, -1 left edge .. +1 right edge;
- ``size``: its apparent size (1 = nominal; larger is closer);
- ``level``: the intensity of a continuous source (0..1).

Per frame the network sees the picture and its difference to the previous frame (motion), through
strided and residual convolutions whose last map is pooled over height only, so
horizontal position survives; over frames, residual dilated temporal convolutions (receptive field
~1.3 s at 24 fps) give each frame the context to tell a bounce from a drop. `engine.planner.default` turns
these outputs into the four CoT blocks.

Two layouts of what follows the convolutions (`PlannerConfig.layout`):

- ``"frame"``: the columns of the last map are projected together into one feature vector per frame,
  and one linear head reads every class from it. Every class's logit then sees the whole picture, so
  the network can learn that one source rules out another wherever it stands: in FoleyWorld's train
  split eight class pairs never meet, and on test-multi a source beside its never-seen partner is
  missed about twice as often as beside others.
- ``"columns"``: each column keeps its own features, temporal convolutions and class logits (weights
  shared across columns), and a class's outputs are pooled over columns: presence and events by a
  log-sum-exp (a soft maximum: the class is seen if it is seen somewhere; multiple-instance learning),
  position as the presence-weighted mean of column centres plus a per-column offset, size and level
  presence-weighted. What decides that a class is in a column is the convolutions' receptive field
  around it (~31 px of 64), not the whole frame, and the position comes from where the class is seen.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as fn

from engine.weight_files import read_weights, write_weights

FORMAT = "foley-planner/1"  # safetensors metadata tag of a saved planner
HEADS = ("present", "event", "x", "size", "level")  # per-class outputs, in this order on the last axis
LAYOUTS = ("frame", "columns")  # what follows the convolutions (`PlannerConfig.layout`)


@dataclass(frozen=True)
class ClassInfo:
    """What the planner knows about one sound class (written into its file by the trainer)."""

    name: str  # class identifier, keys the writer's vocabulary
    family: str  # impact | texture | mechanical | tonal | creature | moving
    kind: str  # discrete | continuous | mixed
    moving: bool  # the source travels across the frame
    min_gap: float  # shortest interval between two of its events, seconds


@dataclass(frozen=True)
class PlannerConfig:
    """Input format and sizes of the planner network."""

    classes: tuple[ClassInfo, ...] = field(default_factory=tuple)  # C: the classes it predicts
    rate: float = 24.0  # frames per second it sees (frame k shows time k / rate)
    size: int = 64  # S: frames letterboxed and resized to S x S
    channels: tuple[int, ...] = (24, 48, 64)  # one stride-2 3x3 convolution per entry (S -> S / 2^n)
    refine: int = 1  # residual stride-1 3x3 convolutions at the last resolution (shape needs depth)
    width: int = 128  # D: per-frame feature width over time
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # one residual temporal conv (kernel 3) per entry
    layout: str = "frame"  # "frame": one feature vector per frame; "columns": per-column features and logits,
    #                        pooled over columns (see the module doc); files written before it read as "frame"

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a planner needs at least one class")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout=}")
        if self.size % 2 ** len(self.channels):
            raise ValueError(f"size must be a multiple of 2^{len(self.channels)}, got {self.size=}")

    @property
    def n_classes(self) -> int:
        """C: number of classes."""
        return len(self.classes)

    @property
    def columns(self) -> int:
        """Horizontal positions of the last feature map."""
        return self.size // 2 ** len(self.channels)

    def to_json(self) -> str:
        """The config as a JSON string (for file metadata)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PlannerConfig:
        """Inverse of `to_json`."""
        d = json.loads(text)
        d["classes"] = tuple(ClassInfo(**c) for c in d["classes"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class PlannerNet(nn.Module):
    """Frames (B, F, S, S, 3) uint8 -> per-class outputs (B, F, C, len(HEADS)) (logits / raw values)."""

    def __init__(self, *, config: PlannerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        # per-class reading thresholds calibrated on FoleyWorld val clips (`trainer.planner.calibrate`):
        # {"present": {class: p}, "event": {class: p}}; empty: the global defaults of engine.planner.default
        self.thresholds: dict[str, dict[str, float]] = {}
        c = (6, *cfg.channels)  # picture + difference to the previous frame
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(c[:-1], c[1:]))
        self.refine = nn.ModuleList(nn.Conv2d(c[-1], c[-1], 3, padding=1) for _ in range(cfg.refine))
        per_column = cfg.layout == "columns"  # project each column alone, or all columns together
        self.proj = nn.Linear(cfg.channels[-1] * 2 * (1 if per_column else cfg.columns), cfg.width)  # (mean, max)
        self.temporal = nn.ModuleList(nn.Conv1d(cfg.width, cfg.width, 3, padding=d, dilation=d) for d in cfg.dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.width) for _ in cfg.dilations)  # per frame: no clip-wide statistics
        self.head = nn.Linear(cfg.width, cfg.n_classes * len(HEADS))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """He-normal convolutions (GELU), Xavier projection, zero biases; temporal residuals start at
        zero (the network begins per-frame, Fixup-style), and the head starts small."""
        for m in [*self.convs, *self.refine]:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        for m in self.temporal:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def column_maps(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, S, S, 3) uint8 -> (B, F, 2c, W) the last map pooled over height (mean and max), W columns."""
        b, f, s = frames.shape[:3]
        if frames.ndim != 5 or frames.shape[-1] != 3 or s != self.config.size:
            raise ValueError(f"expected frames (B, F, {self.config.size}, {self.config.size}, 3), got {frames.shape=}")
        x = frames.float().div(255.0).permute(0, 1, 4, 2, 3)  # (B, F, 3, S, S)
        prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)  # frame 0 is its own previous frame: no motion
        x = torch.cat([x - 0.5, (x - prev) * 4.0], dim=2).reshape(b * f, 6, s, s)
        for conv in self.convs:
            x = fn.gelu(conv(x))  # (B*F, c, S', S')
        for conv in self.refine:
            x = x + fn.gelu(conv(x))  # residual: larger receptive field at the last resolution
        x = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)  # pool over height: (B*F, 2c, W)
        return x.reshape(b, f, *x.shape[1:])

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, S, S, 3) uint8 -> (B, D, F) per-frame features ("frame" layout)."""
        x = self.column_maps(frames)  # (B, F, 2c, W)
        x = self.proj(x.flatten(2))  # (B, F, D)
        return x.transpose(1, 2)  # (B, D, F)

    def _temporal(self, h: torch.Tensor) -> torch.Tensor:
        """(N, D, F) -> (N, D, F) through the residual dilated temporal convolutions."""
        for conv, norm in zip(self.temporal, self.norms):
            h = h + conv(fn.gelu(norm(h.transpose(1, 2)).transpose(1, 2)))  # residual, sees both sides of a frame
        return h

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, S, S, 3) uint8 -> (B, F, C, H) with H = len(HEADS)."""
        if self.config.layout == "columns":
            return self._forward_columns(frames)
        h = self._temporal(self.frame_features(frames))  # (B, D, F)
        out = self.head(h.transpose(1, 2))  # (B, F, C * H)
        b, f = out.shape[:2]
        return out.reshape(b, f, self.config.n_classes, len(HEADS))

    def _forward_columns(self, frames: torch.Tensor) -> torch.Tensor:
        """The "columns" layout: per-column logits (B, W, F, C, H) pooled over the W columns into the same
        (B, F, C, H) raw outputs as the "frame" layout, so `activate` reads both alike."""
        x = self.column_maps(frames)  # (B, F, 2c, W)
        b, f, _, w = x.shape
        h = self.proj(x.permute(0, 3, 1, 2))  # (B, W, F, D)
        h = self._temporal(h.reshape(b * w, f, -1).transpose(1, 2))  # (B*W, D, F)
        out = self.head(h.transpose(1, 2)).reshape(b, w, f, self.config.n_classes, len(HEADS))  # (B, W, F, C, H)
        return pool_columns(out)


def pool_columns(out: torch.Tensor) -> torch.Tensor:
    """Per-column raw outputs (B, W, F, C, H) -> (B, F, C, H), what a "frame" layout network returns:

    - ``present``, ``event``: log-sum-exp over the W columns minus log W (a soft maximum; at equal logits
      their value, so a fresh network starts undecided rather than sure);
    - ``x``: with weights softmax over columns of ``present``, the weighted mean of each column's centre
      plus ``tanh(dx) / W`` (half a column either way), written as the raw value that `activate`
      (``1.5 tanh``) turns back into that position;
    - ``size``, ``level``: the weighted mean of the columns' raw values.
    """
    w = out.shape[1]  # W columns
    present, event, dx, size, level = out.unbind(-1)  # each (B, W, F, C)
    weight = present.softmax(dim=1)  # where along the columns the class is seen
    centre = (torch.arange(w, dtype=out.dtype, device=out.device) + 0.5) * 2.0 / w - 1.0  # (W,) in -1 .. 1
    x_col = centre[:, None, None] + torch.tanh(dx) / w  # (B, W, F, C)
    x_pos = (weight * x_col).sum(dim=1)  # (B, F, C) in -1 .. 1
    pooled = [
        torch.logsumexp(present, dim=1) - math.log(w),
        torch.logsumexp(event, dim=1) - math.log(w),
        torch.atanh((x_pos / 1.5).clamp(-0.999, 0.999)),
        (weight * size).sum(dim=1),
        (weight * level).sum(dim=1),
    ]
    return torch.stack(pooled, dim=-1)  # (B, F, C, H)


def save_planner(model: PlannerNet, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Write the weights (``dtype``; float16 halves the shipped size) with the config (and the calibrated
    reading thresholds, when there are any) in the metadata."""
    state = {k: v.to(dtype) for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": model.config.to_json()}
    if model.thresholds:
        meta["thresholds"] = json.dumps(model.thresholds, sort_keys=True)
    write_weights(path, state, meta)


def load_planner_net(path: str | Path) -> PlannerNet:
    """Rebuild a planner saved by `save_planner` (float32, eval mode); `UserInputError` when unusable."""
    state, meta = read_weights(path, FORMAT, "planner")
    model = PlannerNet(config=PlannerConfig.from_json(meta["config"]))
    model.load_state_dict(state)
    if "thresholds" in meta:
        model.thresholds = {k: {c: float(v) for c, v in d.items()} for k, d in json.loads(meta["thresholds"]).items()}
    return model.eval()


def activate(out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw network outputs (..., C, H) -> named heads: ``present`` and ``event`` logits, ``x`` in
    (-1.5, 1.5), ``size`` in (0.5, 1.5), ``level`` in (0, 1). One definition for training and reading."""
    h = {name: out[..., i] for i, name in enumerate(HEADS)}
    return {
        "present": h["present"],
        "event": h["event"],
        "x": 1.5 * torch.tanh(h["x"]),
        "size": 1.0 + 0.5 * torch.tanh(h["size"]),
        "level": torch.sigmoid(h["level"]),
    }
