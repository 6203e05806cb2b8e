"""Stereo audio for a FoleyWorld scene, synthesised from the same parameters the picture is drawn from.

Physically inspired methods: modal synthesis for struck objects (wood, metal, glass, stone, bells,
clock ticks), Karplus-Strong for the plucked string, spectrally shaped noise for textures (rain,
wind, water, fire, tyres), harmonic oscillators with a continuous phase for engines and vehicles, FM
sweeps for birds and amplitude-modulated carriers for crickets. Every instance varies in pitch,
damping, material and loudness. Stereo comes from the picture: screen position sets the level and
time differences (`engine.stereo`), apparent size sets distance (level, brightness, reverb send).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve, lfilter

from engine.stereo import itd_seconds, pan_gains
from trainer.foleyworld.scene import Scene, Source

TRACK_RATE = 10.0  # frames per second of the per-source energy and position tracks


@dataclass
class Rendered:
    """Audio of a scene and the per-source ground truth measured on the stems."""

    audio: np.ndarray  # (N, 2) float32 stereo mix in [-1, 1]
    track_x: np.ndarray  # (S, K) screen x of each source per track frame
    track_energy: np.ndarray  # (S, K) mean-square energy of each source's direct stereo stem per frame


# ----------------------------------------------------------------------------- building blocks


def modal_sum(n: int, sr: int, freqs, decays, amps, phase_rng: np.random.Generator | None = None) -> np.ndarray:
    """Sum of exponentially decaying sinusoids, ``n`` samples. decays in seconds (1/e time)."""
    t = np.arange(n) / sr
    f = np.asarray(freqs, dtype=np.float64)[:, None]
    d = np.asarray(decays, dtype=np.float64)[:, None]
    a = np.asarray(amps, dtype=np.float64)[:, None]
    ok = (f < sr / 2 * 0.95).astype(np.float64)  # drop modes above Nyquist
    phase = 0.0 if phase_rng is None else phase_rng.uniform(0, 2 * np.pi, f.shape)
    return (ok * a * np.exp(-t / d) * np.sin(2 * np.pi * f * t + phase)).sum(axis=0)


def click_burst(rng: np.random.Generator, n: int, sr: int, decay: float, lowpass_hz: float | None = None) -> np.ndarray:
    """Decaying noise burst (the contact transient of an impact)."""
    x = rng.standard_normal(n) * np.exp(-np.arange(n) / (decay * sr))
    if lowpass_hz:
        a = np.exp(-2 * np.pi * lowpass_hz / sr)
        x = lfilter([1 - a], [1, -a], x)
    return x


def place_segment(buf: np.ndarray, seg: np.ndarray, t: float, sr: int) -> None:
    """Add ``seg`` into ``buf`` starting at time ``t`` (clipped at the end)."""
    i = int(round(t * sr))
    if i >= len(buf):
        return
    m = min(len(seg), len(buf) - i)
    buf[i : i + m] += seg[:m]


def shaped_noise(rng: np.random.Generator, n: int, sr: int, mag) -> np.ndarray:
    """Noise whose short-time magnitude spectrum is ``mag(times (T,), freqs (F,)) -> (T, F)``.

    Random-phase STFT frames overlap-added with a sine window at 50% overlap (w^2 sums to one, so
    the variance is constant).
    """
    n_fft, hop = 1024, 512
    n_frames = n // hop + 2
    times = (np.arange(n_frames) * hop - hop) / sr  # frame centres
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    spec = rng.standard_normal((n_frames, len(freqs))) + 1j * rng.standard_normal((n_frames, len(freqs)))
    frames = np.fft.irfft(spec * mag(times, freqs), n=n_fft, axis=1)  # (T, n_fft)
    frames *= np.sin(np.pi * (np.arange(n_fft) + 0.5) / n_fft)
    out = np.zeros((n_frames + 1) * hop)
    out[: n_frames * hop] += frames[:, :hop].reshape(-1)
    out[hop : (n_frames + 1) * hop] += frames[:, hop:].reshape(-1)
    return out[hop : hop + n] * np.sqrt(2.0 / n_fft)


def band_gain(freqs: np.ndarray, lo: float, hi: float, slope: float = 1.0) -> np.ndarray:
    """Smooth band-pass magnitude shape (F,) between lo and hi Hz."""
    f = np.maximum(freqs, 1.0)
    return 1.0 / np.sqrt((1 + (lo / f) ** (2 * slope)) * (1 + (f / hi) ** (2 * slope)))


# ----------------------------------------------------------------------------- one voice per class


def _impact(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One impact segment for the source's material (modal body plus contact click)."""
    p, mat = src.params, src.cls
    damp, pitch = p["damping"], p["pitch"]
    if mat == "wood_knock":
        f0, ratios, dec, n_s, click = (
            240 * pitch,
            [1, 2.31, 3.89, 5.12],
            np.array([0.05, 0.03, 0.02, 0.012]),
            0.3,
            0.002,
        )
    elif mat == "metal_clang":
        f0, ratios, dec, n_s, click = (
            520 * pitch,
            [1, 2.76, 5.40, 8.93, 13.34],
            np.array([1.0, 0.7, 0.5, 0.3, 0.2]),
            1.6,
            0.002,
        )
    elif mat == "glass_clink":
        f0, ratios, dec, n_s, click = 2100 * pitch, [1, 2.32, 4.25, 6.63], np.array([0.3, 0.2, 0.12, 0.08]), 0.7, 0.0015
    else:  # stone: mostly a dull noisy knock
        f0, ratios, dec, n_s, click = 110 * pitch, [1, 1.7, 2.9], np.array([0.025, 0.015, 0.01]), 0.2, 0.012
    n = int(n_s * sr)
    freqs = f0 * np.array(ratios) * rng.uniform(0.98, 1.02, len(ratios))
    amps = rng.uniform(0.5, 1.0, len(ratios)) / np.arange(1, len(ratios) + 1) ** 0.5
    body = modal_sum(n, sr, freqs, dec / damp, amps, rng)
    lp = {"stone_hit": 3000.0, "wood_knock": 5000.0}.get(mat)
    # The contact transient is what makes each hit audible over the ringing of earlier ones.
    seg = body / (np.abs(body).max() + 1e-9) + 1.2 * click_burst(rng, n, sr, click, lp)
    return seg


def _clock(src: Source, rng: np.random.Generator, sr: int, k: int) -> np.ndarray:
    n = int(0.08 * sr)
    f0 = 2400 * src.params["pitch"] * (1.0 if k % 2 == 0 else 0.85)  # tick, tock
    body = modal_sum(n, sr, [f0, f0 * 1.47, f0 * 2.13], [0.012, 0.008, 0.006], [1, 0.6, 0.4], rng)
    return body + 0.8 * click_burst(rng, n, sr, 0.0008)


def _step(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.25 * sr)
    thump = modal_sum(n, sr, [90 * src.params["pitch"], 150 * src.params["pitch"]], [0.035, 0.02], [1, 0.5], rng)
    grit = click_burst(rng, n, sr, 0.03 * src.params["damping"], 2500.0)
    return thump / (np.abs(thump).max() + 1e-9) + 2.0 * grit / (np.abs(grit).max() + 1e-9)


def _pluck(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Karplus-Strong string: a noise burst recirculated through a delay with an averaging filter."""
    f0 = src.params["note_hz"] * rng.uniform(0.995, 1.005)
    period = sr / f0
    delay = int(period)
    rho = 0.996 ** (1.0 / src.params["damping"])
    n = int(1.6 * sr)
    excite = np.zeros(n)
    excite[:delay] = rng.uniform(-1, 1, delay)
    a = np.zeros(delay + 2)
    a[0], a[delay], a[delay + 1] = 1.0, -rho / 2, -rho / 2
    y = lfilter([1.0], a, excite)
    return y / (np.abs(y).max() + 1e-9)


def _bell(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    f0 = src.params["note_hz"]
    ratios = np.array([0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011])
    decays = np.array([2.5, 1.8, 1.4, 1.1, 0.9, 0.6, 0.5, 0.4]) / src.params["damping"]
    n = int(2.5 * sr)
    body = modal_sum(n, sr, f0 * ratios, decays, rng.uniform(0.4, 1.0, len(ratios)), rng)
    return body / (np.abs(body).max() + 1e-9) + 0.6 * click_burst(rng, n, sr, 0.001)


def _chirp(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Bird syllable: a fast FM sweep with a little vibrato."""
    dur = rng.uniform(0.06, 0.11)
    n = int(dur * sr)
    t = np.arange(n) / sr
    f_hi, f_lo = 5200 * src.params["pitch"], 2600 * src.params["pitch"]
    u = t / dur
    freq = f_hi + (f_lo - f_hi) * u**0.7 + 180 * np.sin(2 * np.pi * 45 * t)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    env = np.minimum(t / 0.004, 1.0) * (1 - u) ** 1.5
    return env * (np.sin(phase) + 0.3 * np.sin(2 * phase))


def _cricket(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Cricket chirp: a 4-5 kHz carrier amplitude-modulated at 90 Hz (partial depth: one onset per chirp)."""
    dur = rng.uniform(0.18, 0.26)
    n = int(dur * sr)
    t = np.arange(n) / sr
    f0 = 4400 * src.params["pitch"]
    carrier = np.sin(2 * np.pi * f0 * t) + 0.4 * np.sin(4 * np.pi * f0 * t) + 0.15 * np.sin(6 * np.pi * f0 * t)
    am = 1.0 - 0.4 * (0.5 + 0.5 * np.cos(2 * np.pi * 90 * t))
    env = np.minimum(t / 0.003, 1.0) * np.minimum((dur - t) / 0.03, 1.0)
    scrape = click_burst(rng, n, sr, 0.002)  # the first stridulation pulse is a broadband tick
    return env * am * carrier + 0.8 * scrape


def _crackle(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.06 * sr)
    seg = click_burst(rng, n, sr, 0.0015)
    for _ in range(rng.integers(1, 4)):  # a few smaller pops right after the main one
        place_segment(seg, 0.4 * click_burst(rng, int(0.01 * sr), sr, 0.0008), rng.uniform(0.008, 0.035), sr)
    return seg


def _event_segment(src: Source, rng: np.random.Generator, sr: int, k: int) -> np.ndarray:
    """The sound of event ``k`` of a discrete source (unnormalised)."""
    if src.cls in ("wood_knock", "metal_clang", "glass_clink", "stone_hit"):
        return _impact(src, rng, sr)
    if src.cls == "clock_tick":
        return _clock(src, rng, sr, k)
    voices = {
        "footsteps": _step,
        "plucked_string": _pluck,
        "bell": _bell,
        "bird_chirp": _chirp,
        "cricket": _cricket,
        "fire": _crackle,
    }
    if src.cls not in voices:
        raise ValueError(f"no event voice for {src.cls=}")
    return voices[src.cls](src, rng, sr)


# Classes whose resonant body is the same object at every event: synthesised once per source
# (only the contact transient and the level change per event), which is both physical and cheap.
_SAME_BODY = {"wood_knock", "metal_clang", "glass_clink", "stone_hit", "plucked_string", "bell"}


def _events_voice(src: Source, rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Mono signal of a discrete-event source: one voice per event time."""
    buf = np.zeros(n)
    cache: dict[int, np.ndarray] = {}
    for k, (t, g) in enumerate(zip(src.events, src.event_gain)):
        key = 0 if src.cls in _SAME_BODY else (k % 2 if src.cls == "clock_tick" else -1)
        if key == -1 or key not in cache:
            seg = _event_segment(src, rng, sr, k)
            seg = seg / (np.abs(seg).max() + 1e-9)
            if key != -1:
                cache[key] = seg
        else:
            seg = cache[key].copy()
            m = min(len(seg), int(0.004 * sr))
            seg[:m] += 0.3 * rng.uniform(-1, 1, m) * np.exp(-np.arange(m) / (0.001 * sr))
        place_segment(buf, 0.5 * g * seg, t, sr)
    return buf


def _texture(src: Source, rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Mono signal of a continuous texture; its level follows the source's intensity curve."""
    inten = src.intensity_at
    if src.cls == "rain":
        lo, hi = 700 * src.params["pitch"], 9000.0
        x = shaped_noise(rng, n, sr, lambda t, f: inten(t)[:, None] * band_gain(f, lo, hi)[None, :])
        drops = np.zeros(n)  # sparse audible drops on the bed, rate follows intensity
        for t in np.sort(rng.uniform(0, n / sr, int(25 * n / sr))):
            if rng.random() < inten(t):
                place_segment(drops, modal_sum(int(0.02 * sr), sr, [rng.uniform(2500, 6000)], [0.004], [1.0]), t, sr)
        return 0.022 * x / (x.std() + 1e-9) + 0.008 * drops
    if src.cls == "wind":
        c0 = 350 * src.params["pitch"]
        x = shaped_noise(
            rng,
            n,
            sr,
            lambda t, f: (
                inten(t)[:, None] ** 1.5
                * band_gain(f[None, :], c0 * (0.6 + inten(t)[:, None]), c0 * (1.4 + 2 * inten(t)[:, None]), 2.0)
            ),
        )
        return 0.028 * x / (x.std() + 1e-9)
    if src.cls == "water_stream":
        x = shaped_noise(rng, n, sr, lambda t, f: (0.5 + inten(t)[:, None]) * band_gain(f, 250, 3500, 1.5)[None, :])
        bub = np.zeros(n)
        for t in np.sort(rng.uniform(0, n / sr, int(40 * n / sr))):
            if rng.random() < inten(t):
                m = int(0.03 * sr)
                tt = np.arange(m) / sr
                f0 = rng.uniform(400, 1500) * src.params["pitch"]
                ph = 2 * np.pi * np.cumsum(f0 * (1 + 8 * tt)) / sr  # Minnaert bubble: pitch rises as it decays
                place_segment(bub, np.exp(-tt / 0.008) * np.sin(ph), t, sr)
        return 0.02 * x / (x.std() + 1e-9) + 0.005 * bub
    if src.cls == "fire":
        x = shaped_noise(rng, n, sr, lambda t, f: (0.3 + inten(t)[:, None]) * band_gain(f, 80, 1200, 1.0)[None, :])
        return 0.022 * x / (x.std() + 1e-9)
    if src.cls == "engine_idle":
        return _engine(src, sr, n, rng)
    if src.cls == "car_pass":
        return _car(src, sr, n, rng)
    raise ValueError(f"no texture voice for {src.cls=}")


def harmonic_series(phase: np.ndarray, n_harm: int, tilt: float) -> np.ndarray:
    """Band-limited buzz from a phase track (radians): harmonics with 1/k^tilt amplitudes.

    Uses the Chebyshev recursion sin(k p) = 2 cos(p) sin((k-1) p) - sin((k-2) p): one sin and one
    cos instead of one sin per harmonic.
    """
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    out = cur.copy()
    for k in range(2, n_harm + 1):
        prev, cur = cur, two_cos * cur - prev
        out += cur / k**tilt
    return out


def _engine(src: Source, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    rpm = src.params["rpm"] * (0.85 + 0.3 * src.intensity_at(t))
    f_fire = rpm / 30.0  # four-stroke, four cylinders: two firings per revolution
    phase = 2 * np.pi * np.cumsum(f_fire) / sr
    buzz = harmonic_series(phase, 8, 1.0)
    rumble = shaped_noise(rng, n, sr, lambda tt, f: band_gain(f, 60, 600)[None, :].repeat(len(tt), 0))
    x = buzz / (buzz.std() + 1e-9) + 0.5 * rumble / (rumble.std() + 1e-9) * (1 + 0.6 * np.sin(phase))
    level = 0.5 + 0.5 * src.intensity_at(t)
    return 0.04 * level * x / (x.std() + 1e-9)


def _car(src: Source, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A vehicle passing: level 1/r, Doppler-shifted engine and tyre noise, silent off the road."""
    t = np.arange(n) / sr
    span = src.t_end - src.t_start
    speed_x = (src.x1 - src.x0) / span  # screen units per second
    world = 6.0  # metres per screen unit at the reference distance
    xw = src.x_at(t) * world
    dist = 4.0 / src.size
    r = np.sqrt(xw**2 + dist**2)
    v_radial = speed_x * world * xw / r  # m/s, positive when moving away
    doppler = 343.0 / (343.0 + v_radial)
    f_eng = 70 * src.params["pitch"] * (1 + 0.1 * abs(speed_x)) * doppler
    buzz = harmonic_series(2 * np.pi * np.cumsum(f_eng) / sr, 10, 1.0)
    tyre = shaped_noise(rng, n, sr, lambda tt, f: band_gain(f, 300, 4000)[None, :].repeat(len(tt), 0))
    x = buzz / (buzz.std() + 1e-9) + 1.2 * tyre / (tyre.std() + 1e-9)
    active = np.clip(np.minimum(t - src.t_start, src.t_end - t) / 0.5, 0.0, 1.0)
    return 0.09 * active * (dist / r) * x / (x.std() + 1e-9)


# ----------------------------------------------------------------------------- space and room


def one_pole_lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    a = np.exp(-2 * np.pi * min(cutoff, 0.45 * sr) / sr)
    return lfilter([1 - a], [1, -a], x, axis=0)


def spatialise(mono: np.ndarray, src: Source, sr: int) -> np.ndarray:
    """(N,) mono -> (N, 2) stereo with the level and time differences of the source's screen position."""
    n = len(mono)
    if src.x0 == src.x1:
        g_l, g_r = pan_gains(src.x0)
        lag = int(round(abs(float(itd_seconds(src.x0))) * sr))
        late = np.concatenate([np.zeros(lag), mono[: n - lag]])
        left, right = (late, mono) if src.x0 > 0 else (mono, late)
        return np.stack([g_l * left, g_r * right], axis=1)
    t = np.arange(n) / sr
    x = src.x_at(t)
    g_l, g_r = pan_gains(x)
    itd = itd_seconds(x) * sr  # samples, positive: left late
    idx = np.arange(n, dtype=np.float64)
    left = np.interp(idx - np.maximum(itd, 0.0), idx, mono, left=0.0)
    right = np.interp(idx + np.minimum(itd, 0.0), idx, mono, left=0.0)
    return np.stack([g_l * left, g_r * right], axis=1)


def room_response(rng: np.random.Generator, room: float, sr: int) -> np.ndarray:
    """(M, 2) decorrelated exponentially decaying noise; RT60 from 0.25 s (dry) to 1.6 s (hall)."""
    rt60 = 0.25 + 1.35 * room
    m = int(rt60 * sr)
    env = 10 ** (-3 * np.arange(m) / m)
    ir = rng.standard_normal((m, 2)) * env[:, None]
    ir = one_pole_lowpass(ir, 6000 - 3000 * room, sr)
    return ir / np.sqrt((ir**2).sum(axis=0, keepdims=True))


def level_tracks(src: Source, stem: np.ndarray, sr: int, n_track: int) -> tuple[np.ndarray, np.ndarray]:
    hop = int(round(sr / TRACK_RATE))
    pad = np.zeros((n_track * hop, 2))
    m = min(len(stem), len(pad))
    pad[:m] = stem[:m]
    energy = (pad**2).mean(axis=1).reshape(n_track, hop).mean(axis=1)
    centres = (np.arange(n_track) + 0.5) / TRACK_RATE
    return src.x_at(centres), energy


def render_audio(scene: Scene) -> Rendered:
    """Synthesise the scene: (N, 2) float32 audio exactly ``duration * sample_rate`` long."""
    cfg = scene.config
    sr, n = cfg.sample_rate, cfg.n_samples
    rng = np.random.default_rng([scene.seed, 1])  # audio stream independent of scene drawing
    n_track = int(np.ceil(cfg.duration * TRACK_RATE))
    mix, send = np.zeros((n, 2)), np.zeros(n)
    xs, es = [], []
    for src in scene.sources:
        mono = np.zeros(n)
        if src.curve:
            mono += _texture(src, rng, sr, n)
        if src.events:
            mono += _events_voice(src, rng, sr, n)
        mono *= 10 ** (src.gain_db / 20) / src.distance
        mono = one_pole_lowpass(mono, 20000 * src.size**2, sr)  # distant sources are darker
        stem = colour_tilt(spatialise(mono, src, sr), scene.tilt, sr)  # the recording's tone is linear: per stem
        mix += stem
        send += mono * scene.room * (0.25 + 0.45 * (src.distance - 0.7))
        x, e = level_tracks(src, stem, sr, n_track)
        xs.append(x)
        es.append(e)
    ir = room_response(rng, scene.room, sr)
    mix += colour_tilt(np.stack([fftconvolve(send, ir[:, c])[:n] for c in range(2)], axis=1), scene.tilt, sr)
    mix += rng.standard_normal((n, 2)) * 10 ** ((-62 + 26 * scene.hiss) / 20)
    peak = np.abs(mix).max()
    if peak > 0.95:  # a fixed, deterministic safety gain; never clip
        mix *= 0.95 / peak
    return Rendered(mix.astype(np.float32), np.array(xs), np.array(es))


def colour_tilt(x: np.ndarray, tilt: float, sr: int) -> np.ndarray:
    """Spectral tilt of the 'recording': negative = darker (more low-pass), positive = brighter."""
    low = one_pole_lowpass(x, 2500.0, sr)
    if tilt >= 0:
        return x + 0.8 * tilt * (x - low)
    return (1 + 0.7 * tilt) * x - 0.7 * tilt * low
