"""Plots of the studio: stereo spectrograms with a shared colour scale and time axis, and the stereo
position over time.

Figures are built as `matplotlib.figure.Figure` objects, not through pyplot: pyplot keeps every figure
until it is closed and is not meant for threads, while a server draws figures for many sessions.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.signal import stft

DB_RANGE = (-90.0, 0.0)  # colour scale of every spectrogram, dB re full scale


def stereo_spectrogram(audio: np.ndarray, sr: int, title: str = "", events: list[float] | None = None):
    """Figure with the left and right channels' spectrograms (shared axes, fixed dB scale).

    ``events`` (seconds) are marked as thin lines, e.g. the ground-truth event times.
    """
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ch, (ax, name) in enumerate(zip(axes, ("left", "right"))):
        f, t, z = stft(audio[:, ch], fs=sr, nperseg=1024, noverlap=768)
        db = 20 * np.log10(np.abs(z) * 2 + 1e-9)
        mesh = ax.pcolormesh(t, f / 1000, db, vmin=DB_RANGE[0], vmax=DB_RANGE[1], cmap="magma", shading="auto")
        ax.set_ylabel(f"{name}\nkHz")
        ax.set_ylim(0, min(16, sr / 2000))
        for e in events or []:
            ax.axvline(e, color="cyan", lw=0.6, alpha=0.6)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, len(audio) / sr)
    if title:
        axes[0].set_title(title)
    fig.colorbar(mesh, ax=axes, label="dB")
    return fig


def _db(audio: np.ndarray, sr: int, ch: int):
    """(f kHz, t s, dB) of one channel; the STFT every studio spectrogram uses."""
    f, t, z = stft(audio[:, ch], fs=sr, nperseg=1024, noverlap=768)
    return f / 1000, t, 20 * np.log10(np.abs(z) * 2 + 1e-9)


def compare_spectrograms(items: list[tuple[str, np.ndarray, int]], duration: float):
    """Side by side: one column per (label, (N, 2) audio, sample rate), left channel above right.

    Every panel has the same colour scale (`DB_RANGE`) and the same time axis, 0 to the video's
    ``duration`` in seconds, so an event sits at the same x in every column and under the video's time.
    """
    if not items:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(3.6 * len(items) + 1.2, 4.4), layout="constrained")
    axes = fig.subplots(2, len(items), sharex=True, sharey=True, squeeze=False)
    mesh = None
    for col, (label, audio, sr) in enumerate(items):
        for ch, name in enumerate(("left", "right")):
            ax = axes[ch, col]
            f, t, db = _db(audio, sr, ch)
            mesh = ax.pcolormesh(t, f, db, vmin=DB_RANGE[0], vmax=DB_RANGE[1], cmap="magma", shading="auto")
            ax.set_ylim(0, 16)
            if col == 0:
                ax.set_ylabel(f"{name}\nkHz")
        axes[0, col].set_title(label, fontsize=10)
        axes[1, col].set_xlabel("time (s)")
    axes[0, 0].set_xlim(0, duration)
    fig.colorbar(mesh, ax=axes, label="dB", shrink=0.9)
    fig.suptitle("spectrograms: left channel above right, one colour scale, the video's time axis", fontsize=10)
    return fig


def stereo_position(items: list[tuple[str, np.ndarray, int]], duration: float, rate: float = 10.0):
    """Estimated stereo position over time of each (label, (N, 2) audio, sample rate): -1 = the left edge
    of the picture, +1 = the right edge (`engine.bench.spatial.azimuth_track`, from level and time
    differences; beyond the edges up to +-2, fully to one side). Frames quieter than 40 dB below the
    loudest frame are not drawn."""
    from engine.bench.spatial import azimuth_track

    fig = Figure(figsize=(9, 2.8), layout="constrained")
    ax = fig.subplots()
    for label, audio, sr in items:
        x, energy = azimuth_track(audio, sr, rate)
        t = (np.arange(len(x)) + 0.5) / rate  # frame centres, seconds
        loud = energy > energy.max(initial=0.0) * 1e-4
        ax.plot(t, np.where(loud, np.clip(x, -2, 2), np.nan), marker=".", lw=1.2, label=label)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlim(0, duration)
    ax.set_ylim(-2.15, 2.15)
    ax.set_yticks([-2, -1, 0, 1, 2], ["hard left", "left edge", "centre", "right edge", "hard right"])
    ax.set_xlabel("time (s)")
    ax.set_title("stereo position", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    return fig


REWARD_KEYS = ("semantic", "temporal", "aesthetic", "spatial", "weighted")  # GRPO's logged reward dimensions


def training_curves(history: list[dict], title: str = ""):
    """Loss and reward curves of a training run from its log entries (`trainer.loop`, `trainer.grpo.learn`).

    Left: the training loss per logged step and, where the run evaluates, the held-out loss. Right, when the
    run logs them: GRPO's mean rewards per iteration (and the held-out weighted reward), or DPO's preference
    margin and accuracy (training and held-out). None when there is nothing to draw yet.
    """
    train = [h for h in history if "loss" in h and h.get("phase", "train") == "train"]
    held = [h for h in history if "held_out_loss" in h]
    rewards = {k: [(h["step"], h[f"reward_{k}"]) for h in history if f"reward_{k}" in h] for k in REWARD_KEYS}
    rewards = {k: v for k, v in rewards.items() if v}
    prefs = [h for h in history if "margin" in h]
    if not (train or held or rewards):
        return None
    right = bool(rewards or prefs)
    fig = Figure(figsize=(9.5 if right else 6.0, 3.0), layout="constrained")
    axes = fig.subplots(1, 2 if right else 1, squeeze=False)[0]
    ax = axes[0]
    if train:
        ax.plot([h["step"] for h in train], [h["loss"] for h in train], lw=1.2, label="training loss")
    if held:
        ax.plot(
            [h["step"] for h in held], [h["held_out_loss"] for h in held], marker="o", lw=1.2, label="held-out loss"
        )
    ax.set_xlabel("step")
    ax.set_title(title or "loss", fontsize=10)
    ax.legend(fontsize=8)
    if right:
        _reward_panel(axes[1], rewards, prefs, history)
    return fig


def _reward_panel(ax, rewards: dict, prefs: list[dict], history: list[dict]) -> None:
    for k, points in rewards.items():
        ax.plot(*zip(*points), lw=1.6 if k == "weighted" else 1.0, label=k)
    evals = [(h["step"], h["eval_weighted"]) for h in history if "eval_weighted" in h]
    if evals:
        ax.plot(*zip(*evals), marker="o", lw=1.2, label="held-out weighted")
    for phase, style in (("train", "-"), ("eval", "o-")):
        rows = [h for h in prefs if h.get("phase") == phase]
        if rows:
            ax.plot([h["step"] for h in rows], [h["accuracy"] for h in rows], style, lw=1.0, label=f"{phase} accuracy")
            ax.plot([h["step"] for h in rows], [h["margin"] for h in rows], style, lw=1.0, label=f"{phase} margin")
    ax.set_xlabel("step")
    ax.set_title("rewards" if rewards else "preference", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
