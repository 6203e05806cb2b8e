"""The generator's sync features: fine-timed visual cues at the latent frame rate.

PrismAudio adds Synchformer features (a network trained for audio-visual synchrony, 24 Hz) to the latent
sequence through a gate (DESIGN "Facts about the reference system"). Ours are two parts, concatenated:

- ``motion`` (`engine.motion`, SYNC_DIM = 50): analytic frame differences per cell. They mark when
  something starts or stops moving, but not a bounce, a tick or a footfall, where the motion goes on at
  the same speed after the sound;
- ``cues`` (5 C): the default planner network's frame-wise outputs (`engine.planner.network`), trained to
  say for every known class whether its source is visible, where it is, how large and intense, and
  whether a sound event happens at that frame (24 fps, ~42 ms). Per class: p = P(visible), P(event),
  and p-weighted position, size - 1 and level, so an unseen class reads as zeros.

Cues are resampled to latent frame k (covering [k, k + 1) / latent_rate s): event probabilities by the
maximum over the planner frames inside the interval (a one-frame event is never skipped, as
`engine.motion.resample_features` does for motion), the rest by linear interpolation at its centre.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.motion import SYNC_DIM, motion_features
from engine.planner.network import PlannerNet, activate  # the one activation of its outputs (training and reading)
from engine.video_io import resample_indices

CUES_PER_CLASS = 5  # visible, event, x, size, level


def cue_dim(planner: PlannerNet | None) -> int:
    """Width of the planner part of the sync features (0 without a planner)."""
    return 0 if planner is None else CUES_PER_CLASS * planner.config.n_classes


def sync_dim(planner: PlannerNet | None) -> int:
    """Ds: width of the whole sync feature vector for a bundle with (or without) planner cues."""
    return SYNC_DIM + cue_dim(planner)


@torch.no_grad()
def frame_cues(planner: PlannerNet, frames: np.ndarray) -> np.ndarray:
    """(F, S, S, 3) uint8 frames at the planner's rate -> (F, C, 5) float32 cues (see the module doc)."""
    out = planner(torch.from_numpy(np.ascontiguousarray(frames))[None])[0]  # (F, C, H)
    h = activate(out)
    p = torch.sigmoid(h["present"])  # (F, C)
    cues = torch.stack([p, torch.sigmoid(h["event"]), h["x"] * p, (h["size"] - 1.0) * p, h["level"] * p], -1)
    return cues.float().numpy()


def cues_at_latent_rate(cues: np.ndarray, rate: float, latent_rate: float, n_latent: int) -> np.ndarray:
    """(F, C, 5) cues at ``rate`` fps -> (T, 5 C) at the latent frames (event: interval maximum; the rest:
    linear interpolation at the frame centre)."""
    f, c, _ = cues.shape
    t_src = np.arange(f) / rate  # planner frame k shows k / rate
    centre = (np.arange(n_latent) + 0.5) / latent_rate  # (T,)
    flat = cues.reshape(f, c * CUES_PER_CLASS)  # (F, C*5), class-major
    out = np.stack([np.interp(centre, t_src, flat[:, d]) for d in range(flat.shape[1])], 1)  # (T, C*5)
    event = flat[:, 1::CUES_PER_CLASS]  # (F, C)
    lo = np.searchsorted(t_src, np.arange(n_latent) / latent_rate - 1e-9)  # first planner frame in each interval
    hi = np.searchsorted(t_src, (np.arange(n_latent) + 1) / latent_rate - 1e-9)
    for k in np.flatnonzero(hi > lo):
        out[k, 1::CUES_PER_CLASS] = np.maximum(out[k, 1::CUES_PER_CLASS], event[lo[k] : hi[k]].max(0))
    return out.astype(np.float32)


def sync_features(
    native: np.ndarray,
    times: np.ndarray,
    duration: float,
    latent_rate: float,
    n_latent: int,
    planner: PlannerNet | None,
    planner_frames: np.ndarray | None = None,
) -> np.ndarray:
    """(T, Ds) sync features of a video: motion of the native frames (N, H, W, 3) shown at ``times`` (N,)
    s, then (with a planner) its cues. The planner reads ``planner_frames`` (F, S, S, 3) at its rate when
    given, else ``native`` resampled to its rate (which must then already be S x S)."""
    motion = motion_features(native, times, latent_rate, n_latent)  # (T, SYNC_DIM)
    if planner is None:
        return motion
    cfg = planner.config
    if planner_frames is None:
        if native.shape[1:3] != (cfg.size, cfg.size):
            raise ValueError(f"planner needs {cfg.size} px frames, got {native.shape=}")
        planner_frames = native[resample_indices(times, duration, cfg.rate)]
    cues = cues_at_latent_rate(frame_cues(planner, planner_frames), cfg.rate, latent_rate, n_latent)
    return np.concatenate([motion, cues], axis=1)


GATE_EVENT = 0.3  # `event_gate`: an event probability at least this high keeps the transient gate open
GATE_REACH = 1  # ... for this many latent frames (~46 ms each) either side of the frame it is read at


def event_gate(sync: np.ndarray | torch.Tensor, threshold: float = GATE_EVENT, reach: int = GATE_REACH):
    """Latent frames where the picture shows no sound event, for `engine.codec.Codec.gate_transients`:
    sync features (T, Ds) -> (T,) bool tensor, True where no class's event probability (the cues' event
    channel) reaches ``threshold`` within ``reach`` frames; None for motion features alone (no cues to read)."""
    sync = torch.from_numpy(np.array(sync, np.float32)) if isinstance(sync, np.ndarray) else sync  # a copy: read-only
    if sync.ndim != 2:
        raise ValueError(f"sync must be (T, Ds), got {tuple(sync.shape)}")
    cues = sync.shape[1] - SYNC_DIM
    if cues <= 0:
        return None
    if cues % CUES_PER_CLASS:
        raise ValueError(f"sync width {sync.shape[1]} is not {SYNC_DIM} motion + {CUES_PER_CLASS} cues per class")
    event = sync[:, SYNC_DIM + 1 :: CUES_PER_CLASS].float().amax(1)  # (T,) the most likely event of any class
    near = torch.nn.functional.max_pool1d(event[None, None], 2 * reach + 1, stride=1, padding=reach)[0, 0]
    return near < threshold
