"""The stereo convention shared by the world's spatialiser and the spatial metrics.

Screen position ``x`` (-1 left edge, +1 right edge) maps to azimuth ``az = x * HALF_FOV``; positions
beyond the frame keep turning up to +-90 degrees. A source at azimuth ``az`` reaches the two
channels with a constant-power level difference (ILD) and a time difference (ITD) of
``MAX_ITD * sin(az)`` (a spherical-head approximation; positive ITD = left channel late).
"""

from __future__ import annotations

import numpy as np

HALF_FOV_DEG = 45.0  # azimuth at the frame edge
MAX_ITD_S = 0.00066  # time difference for a source at 90 degrees, seconds


def x_to_azimuth(x: np.ndarray | float) -> np.ndarray:
    """Azimuth in radians for screen position(s) ``x``; clipped at +-90 degrees."""
    az = np.deg2rad(np.asarray(x, dtype=np.float64) * HALF_FOV_DEG)
    return np.clip(az, -np.pi / 2, np.pi / 2)


def azimuth_to_x(az: np.ndarray | float) -> np.ndarray:
    """Inverse of `x_to_azimuth` (radians to screen position)."""
    return np.rad2deg(np.asarray(az, dtype=np.float64)) / HALF_FOV_DEG


def pan_gains(x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power (left, right) gains for screen position(s) ``x``: gL^2 + gR^2 = 1."""
    theta = (np.sin(x_to_azimuth(x)) + 1.0) * np.pi / 4.0
    return np.cos(theta), np.sin(theta)


def itd_seconds(x: np.ndarray | float) -> np.ndarray:
    """Interaural time difference for screen position(s) ``x`` (positive: source on the right)."""
    return MAX_ITD_S * np.sin(x_to_azimuth(x))


def sin_az_from_energies(e_left: np.ndarray, e_right: np.ndarray) -> np.ndarray:
    """Invert the pan law: sin(azimuth) from left/right channel energies (not amplitudes)."""
    frac = e_right / np.maximum(e_left + e_right, 1e-12)
    theta = np.arcsin(np.sqrt(np.clip(frac, 0.0, 1.0)))
    return np.clip(4.0 * theta / np.pi - 1.0, -1.0, 1.0)
