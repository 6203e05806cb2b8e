"""Training losses.

- `multi_resolution_stft_loss`: spectral convergence + log-magnitude L1 over several STFT resolutions
  (Yamamoto et al., Parallel WaveGAN, 2020, eqs. 1-4).
- `codec_loss`: the stereo codec's reconstruction loss: multi-resolution STFT on left, right, mid and
  side, plus a small waveform L1.

(The flow-matching loss of the generator belongs in this module too, next to these.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

STFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128), (256, 64))  # (n_fft, hop)
MAG_FLOOR = 1e-4  # magnitude floor (-80 dB re a full-scale rms): quieter bins do not count in the log term
STEREO_PARTS = ("left", "right", "mid", "side")  # the four views of a stereo signal that `codec_loss` compares


def _spectrum(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Complex STFT of waveforms (M, N) -> (M, n_fft // 2 + 1, K) frames, Hann window.

    The window is scaled by 1 / sqrt(sum(window^2)) so white noise of rms s has bins of rms s at every
    resolution (one magnitude floor then means the same level for all resolutions).
    """
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    window = window / window.square().sum().sqrt()
    return torch.stft(x, n_fft, hop_length=hop, window=window, center=True, pad_mode="constant", return_complex=True)


def _magnitude(spec: torch.Tensor) -> torch.Tensor:
    """|spec| with ``MAG_FLOOR`` added in power: a smooth floor, so log and gradient stay finite at 0."""
    return torch.hypot(spec.abs(), spec.real.new_tensor(MAG_FLOOR))  # sqrt(|s|^2 + floor^2); abs'(0) := 0


def _terms(p: torch.Tensor, t: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectral convergence, log-magnitude L1) of magnitudes p, t (same shape); ref: magnitudes for the norm.

    Spectral convergence is ``||T - P||_F / ||R||_F`` over the whole batch (R = T normally); the floor
    term keeps a silent reference finite.
    """
    sc = torch.linalg.vector_norm(t - p) / (torch.linalg.vector_norm(ref) + MAG_FLOOR * ref.numel() ** 0.5)
    return sc, (t.log() - p.log()).abs().mean()


def multi_resolution_stft_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over resolutions of (spectral convergence + log-magnitude L1); a scalar, 0 iff equal spectra.

    pred, target: waveforms (..., N) of the same shape (any leading dims, e.g. (B, 2, N) or (B, N)).
    resolutions: (n_fft, hop) pairs in samples.
    reference: waveforms (..., N) whose spectral norm divides the convergence term instead of the
        target's (e.g. the whole stereo signal for the side channel, which can be silent); default target.
    """
    if pred.shape != target.shape or pred.ndim < 1:
        raise ValueError(f"pred and target must have the same shape (..., N), got {pred.shape=} {target.shape=}")
    if reference is not None and reference.shape[-1] != target.shape[-1]:
        raise ValueError(f"reference must have the target's length, got {reference.shape=} {target.shape=}")
    if not resolutions:
        raise ValueError("need at least one (n_fft, hop) resolution")
    p = pred.reshape(-1, pred.shape[-1]).float()  # (M, N)
    t = target.reshape(-1, target.shape[-1]).float()  # (M, N)
    total = p.new_zeros(())
    for n_fft, hop in resolutions:
        t_mag = _magnitude(_spectrum(t, n_fft, hop))  # (M, F, K)
        r = None if reference is None else reference.reshape(-1, t.shape[-1]).float()  # (K, N)
        r_mag = t_mag if r is None else _magnitude(_spectrum(r, n_fft, hop))
        sc, log_l1 = _terms(_magnitude(_spectrum(p, n_fft, hop)), t_mag, r_mag)
        total = total + sc + log_l1
    return total / len(resolutions)


def mid_side(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stereo (B, 2, ...) -> mid (L + R) / 2 and side (L - R) / 2, each (B, ...); waveforms or spectra."""
    return (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2


def _stereo_magnitudes(audio: torch.Tensor, n_fft: int, hop: int) -> dict[str, torch.Tensor]:
    """Magnitudes (B, F, K) of left, right, mid and side of stereo waveforms (B, 2, N).

    The STFT is linear, so mid and side spectra are combinations of the left and right ones: two FFTs
    per signal instead of four.
    """
    b, _, n = audio.shape
    spec = _spectrum(audio.reshape(b * 2, n).float(), n_fft, hop)  # (2B, F, K)
    spec = spec.reshape(b, 2, *spec.shape[1:])  # (B, 2, F, K)
    mid, side = mid_side(spec)
    return {name: _magnitude(s) for name, s in zip(STEREO_PARTS, (spec[:, 0], spec[:, 1], mid, side), strict=True)}


def level_difference_loss(p: dict[str, torch.Tensor], t: dict[str, torch.Tensor], band: int = 8) -> torch.Tensor:
    """Error of the inter-channel level difference (ILD), per frequency band and frame.

    ``p``, ``t``: `_stereo_magnitudes` of prediction and target. Band energies (``band`` bins each) of
    left and right give log(E_L / E_R) (natural log); the loss is its absolute error weighted by the
    target's band energy, so loud bands count and silent ones do not. This is the cue the spatial
    metrics read, which per-channel spectral losses leave almost free (a mono output at the average
    level is close to both channels in log magnitude).
    """

    def bands(m: torch.Tensor) -> torch.Tensor:  # (B, F, K) magnitudes -> (B, F // band, K) energies
        f = m.shape[1] // band * band
        return (m[:, :f] ** 2).reshape(m.shape[0], f // band, band, m.shape[2]).mean(2)

    eps = 1e-7
    pl, pr, tl, tr = bands(p["left"]), bands(p["right"]), bands(t["left"]), bands(t["right"])
    err = ((pl + eps).log() - (pr + eps).log() - (tl + eps).log() + (tr + eps).log()).abs()
    w = (tl + tr).detach()
    return (w * err).sum() / w.sum().clamp_min(eps)


def codec_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    resolutions: tuple[tuple[int, int], ...] = STFT_RESOLUTIONS,
    side_weight: float = 1.0,
    wave_weight: float = 0.1,
    ild_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The codec's reconstruction loss: STFT(L) + STFT(R) + STFT(mid) + side_weight * STFT(side) + wave_weight * L1.

    Each STFT term is `multi_resolution_stft_loss` of that view of the signal. Left and right alone
    cannot tell a correct stereo image from one whose channels have the right spectra but the wrong
    level or time difference; the side signal (L - R) / 2 is large exactly when they differ, so its
    spectrum carries the interchannel level (ILD) and time (ITD) differences. The side's spectral
    convergence is measured against the whole signal's (mid and side) spectral norm, not the side's
    own: a centred (mono) target has no side at all, and an error relative to zero would be unbounded.

    pred, target: stereo waveforms (B, 2, N) in [-1, 1].
    ``ild_weight`` adds `level_difference_loss` (0 leaves it out, as the first shipped codec was trained).
    Returns (scalar loss, {"left", "right", "mid", "side", "ild", "wave_l1", "total"} as floats for logging).
    """
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[1] != 2:
        raise ValueError(f"pred and target must both be stereo (B, 2, N), got {pred.shape=} {target.shape=}")
    parts = {name: pred.new_zeros(()) for name in (*STEREO_PARTS, "ild")}
    for n_fft, hop in resolutions:
        p, t = _stereo_magnitudes(pred, n_fft, hop), _stereo_magnitudes(target, n_fft, hop)
        for name in STEREO_PARTS:
            ref = torch.stack([t["mid"], t["side"]], dim=1) if name == "side" else t[name]
            parts[name] = parts[name] + sum(_terms(p[name], t[name], ref)) / len(resolutions)
        if ild_weight:
            parts["ild"] = parts["ild"] + level_difference_loss(p, t) / len(resolutions)
    parts["wave_l1"] = (pred - target).abs().mean()
    loss = parts["left"] + parts["right"] + parts["mid"] + side_weight * parts["side"] + wave_weight * parts["wave_l1"]
    loss = loss + ild_weight * parts["ild"]
    logged = {k: float(v.detach()) for k, v in parts.items()}
    logged["total"] = float(loss.detach())
    return loss, logged


def logit_normal_times(
    n: int, mean: float = 0.0, std: float = 1.0, eps: float = 1e-4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training times t (n,) = sigmoid(mean + std * N(0, 1)), clamped to [eps, 1 - eps].

    The logit-normal density (Esser et al., SD3, 2024, section 3.1) spends most samples at intermediate t,
    where the velocity is hardest to predict; ``mean`` > 0 shifts them towards the noise end (t = 1).
    Drawn on the generator's device (CPU by default).
    """
    device = generator.device if generator is not None else "cpu"
    u = torch.randn(n, generator=generator, device=device)
    return torch.sigmoid(mean + std * u).clamp(eps, 1.0 - eps)


def flow_matching_loss(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Rectified-flow loss ``|| v_theta(x_t, t) - (x1 - x0) ||^2`` (REFERENCE "Flow matching").

    Convention of `engine.sampling`: ``x_t = (1 - t) x0 + t x1`` with data ``x0`` (B, ...), noise ``x1``
    (B, ...) and times ``t`` (B,) in [0, 1]; ``velocity(x_t, t)`` returns a tensor like ``x0``.
    reduction: "mean" -> a scalar (mean squared error over all elements); "none" -> (B,) per-sample means
    (for weighted objectives such as reward-weighted regression).
    """
    if x0.shape != x1.shape or t.shape != (x0.shape[0],):
        raise ValueError(f"need x0, x1 (B, ...) of one shape and t (B,), got {x0.shape=} {x1.shape=} {t.shape=}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    tb = t.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)  # (B, 1, ...) broadcast over the non-batch dims
    x_t = (1.0 - tb) * x0 + tb * x1
    err = (velocity(x_t, t).float() - (x1 - x0).float()).square()  # (B, ...)
    per_sample = err.flatten(1).mean(1)  # (B,)
    return per_sample.mean() if reduction == "mean" else per_sample
