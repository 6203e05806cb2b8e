"""Plots of the studio: stereo spectrograms with a shared colour scale and time axis."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import stft  # noqa: E402

DB_RANGE = (-90.0, 0.0)  # colour scale of every spectrogram, dB re full scale


def stereo_spectrogram(audio: np.ndarray, sr: int, title: str = "", events: list[float] | None = None):
    """Figure with the left and right channels' spectrograms (shared axes, fixed dB scale).

    ``events`` (seconds) are marked as thin lines, e.g. the ground-truth event times.
    """
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True, constrained_layout=True)
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
