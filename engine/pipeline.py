"""The render pipeline: a video and a four-block CoT in, stereo audio exactly as long as the video out.

Two steps, so the app can cache the first (STYLE 2; MMAudio's ``preprocess_conditions`` / sampling split):

- `prepare_video` decodes a video once at its native rate: the exact duration, the frames the video
  encoder sees (``rate`` fps, ``size`` x ``size``) and the motion (sync) features at the codec's latent
  rate (`engine.motion`); cached per file version and never mutated.
- `render` turns a prepared video, a CoT and `RenderSettings` into ``(N, 2)`` float32 audio with
  ``N = round(duration * sample_rate)`` exactly, whatever the frame rate. Videos that fit the generator
  (``max_frames`` latent frames, ~12 s for the shipped model) render in one pass; longer ones render as
  overlapping windows joined by equal-power crossfades (what users of the reference asked for, DESIGN
  "What users ... ask for"), each window conditioned on its own slice of video tokens and motion and on
  the same CoT, its noise seeded from the user seed and the window index.

Guidance is classifier-free with its branches in one batch (`Generator.velocity_branches`); the
unconditional branch is the null video and sync plus the CoT's ``negative`` text when set
(`Generator.null_like`). By default it is split: the text is weighed by ``cfg`` and the picture and motion
on top of it by ``video_cfg`` (a third, text-only branch), and the sampled latent's envelope is de-clicked
(`Codec.declick`) and its weak rises slowed where the picture shows no event (`Codec.gate_transients`,
`finish_latent`) before decoding. No loudness or peak normalisation across takes (a defect of the
reference): each take is only passed through `safety_limit`, which touches nothing unless a sample
exceeds full scale.

`engine.media.mux_audio` writes a take back into its video with the video stream copied, not re-encoded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cot import Cot, validate_cot
from .errors import FoleyError, UserInputError
from .generator import Conditions, Generator, TextBlock, cot_text_blocks, encode_negative
from .models import ModelBundle
from .planner_net import PlannerNet
from .sampling import Velocity, guided, sample_ode
from .sync import event_gate, sync_features
from .timeline import timeline_track
from .video_io import VideoInfo, _scan, resample_indices

Progress = Callable[[int, int], None]  # (steps done, steps in all) over every window of a render
SAFETY_KNEE = 0.9  # `safety_limit`: samples below this magnitude are never changed

# Used when the user gives no CoT, until the planner exists; it says what it is, in the CoT itself.
FALLBACK_COT = Cot(
    semantic="generic foley matching the visible action (fallback: no CoT given)",
    temporal="sounds start and stop with the visible motion (fallback: no CoT given)",
    aesthetic="clean, natural, dry recording (fallback: no CoT given)",
    spatial="sources placed where they appear on screen (fallback: no CoT given)",
)


GUIDANCE_INTERVAL = (0.4, 1.0)  # the noise levels guided by default (`RenderSettings.guidance_interval`)
VIDEO_CFG = 5.0  # the picture-and-motion guidance scale by default (`RenderSettings.video_cfg`, docs/RESULTS.md)


def check_video_cfg(video_cfg: float | None) -> None:
    """`UserInputError` unless ``video_cfg`` is None or a finite number >= 0 (NaN fails the comparison)."""
    if video_cfg is not None and not 0.0 <= video_cfg < math.inf:
        raise UserInputError(f"video guidance scale must be a finite number >= 0, got {video_cfg}")


def generator_guidance(
    gen: Generator,
    cond: Conditions,
    uncond: Conditions,
    cfg: float,
    interval: tuple[float, float],
    video_cfg: float | None,
    rescale: float = 0.0,
    frozen: bool = False,
) -> Velocity:
    """The guided velocity of ``gen`` for ``cond`` against ``uncond`` (`engine.sampling.guided`), the
    branches in one network pass: split guidance with a text-only third branch when ``video_cfg`` is set
    and differs from ``cfg``, plain two-branch guidance otherwise; the conditional velocity alone outside
    ``interval``. Renders and the GRPO policy both sample with it. ``frozen``: the weights (and LoRA
    adapters) stay as they are from here on (a render), so the conditions' context is projected once
    (`Generator.fixed_velocity`); the same velocities, to the bit. Not for GRPO, whose reference policy
    evaluates the same velocity with the adapters switched off."""
    branches = [cond, uncond]
    if video_cfg is not None and video_cfg != cfg:
        branches.insert(1, gen.text_only_like(cond))  # (cond, text only, uncond)
    else:
        video_cfg = None  # the same scale for both: plain guidance
    if frozen:
        every, alone = gen.fixed_velocity(branches), gen.fixed_velocity([cond])
        conditional = lambda x, t: alone(x, t)[0]  # noqa: E731
    else:
        every = lambda x, t: gen.velocity_branches(x, t, branches)  # noqa: E731
        conditional = lambda x, t: gen.velocity(x, t, cond)  # noqa: E731
    return guided(every, cfg, rescale, interval, conditional, video_cfg)


def check_guidance_interval(interval: tuple[float, float]) -> None:
    """`UserInputError` unless ``interval`` is (lo, hi) with 0 <= lo <= hi <= 1 (NaN fails the comparison)."""
    lo, hi = interval
    if not 0.0 <= lo <= hi <= 1.0:
        raise UserInputError(f"guidance interval must be lo:hi with 0 <= lo <= hi <= 1, got {lo}:{hi}")


@dataclass(frozen=True)
class RenderSettings:
    """How to sample one take. Validated on creation (`UserInputError`: these come from the user)."""

    seed: int = 0  # noise seed: the same seed, inputs, model and machine give bit-identical audio
    steps: int = 24  # Euler steps from noise to data (the reference's 24)
    cfg: float = 3.5  # classifier-free guidance scale (the reference uses 5; 3.5 is best for the shipped default
    #                   on 30 FoleyWorld val clips, docs/RESULTS.md); 1 = conditional only, 0 = unconditional
    rescale: float = 0.0  # guidance rescale phi in [0, 1] (`engine.sampling.guided`); 0 = plain guidance
    guidance_interval: tuple[float, float] = GUIDANCE_INTERVAL  # guide only at noise levels lo <= t <= hi (t = 1 is
    #                   noise), the conditional velocity elsewhere (`engine.sampling.guided`)
    video_cfg: float | None = VIDEO_CFG  # guidance scale of the picture and motion on top of the text (split
    #                   guidance, `engine.sampling.guided`); None: the same as cfg, plain two-branch guidance
    declick: bool = True  # pass the sampled latent through `Codec.declick` before decoding
    gate: bool = True  # then slow weak envelope rises where the picture shows no event (`Codec.gate_transients`;
    #                   only for models whose sync features carry planner cues)
    shift: float = 1.0  # timestep shift of `sampling.timesteps` (1 = the uniform grid of the reference)
    window: float = 10.0  # seconds per window for videos longer than the generator's max_frames
    crossfade: float = 1.0  # seconds of equal-power crossfade between windows (at most window / 3)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise UserInputError(f"seed must be a whole number in 0 .. 2^63 - 1, got {self.seed!r}")
        if self.steps < 1:
            raise UserInputError(f"steps must be at least 1, got {self.steps}")
        if not math.isfinite(self.cfg) or self.cfg < 0:
            raise UserInputError(f"cfg (guidance scale) must be a finite number >= 0, got {self.cfg}")
        check_video_cfg(self.video_cfg)
        if not 0.0 <= self.rescale <= 1.0:
            raise UserInputError(f"guidance rescale must be in 0 .. 1, got {self.rescale}")
        check_guidance_interval(self.guidance_interval)
        if not math.isfinite(self.shift) or self.shift <= 0:
            raise UserInputError(f"shift must be a positive number, got {self.shift}")
        if not self.window > 0 or not 0 <= self.crossfade <= self.window / 3:
            raise UserInputError(
                f"need window > 0 and 0 <= crossfade <= window / 3 seconds, got {self.window=} {self.crossfade=}"
            )


@dataclass(frozen=True, eq=False)
class PreparedVideo:
    """What `render` needs from a video; arrays are read-only (the object is cached and shared)."""

    info: VideoInfo  # facts of the source file
    duration: float  # seconds of picture; every output matches it
    sample_rate: int  # audio samples per second the features were prepared for
    n_samples: int  # N = round(duration * sample_rate): the exact length of the audio to render
    frames: np.ndarray  # (F, S, S, 3) uint8 for the video encoder, frame k shows k / frame_rate
    frame_rate: float  # frames per second of ``frames``
    sync: np.ndarray  # (T, Ds) float32 sync features at the latent rate (engine.sync), T = ceil(N / hop)
    hop: int  # audio samples per latent frame

    @property
    def n_latent(self) -> int:
        """T: latent frames covering the whole video."""
        return self.sync.shape[0]


# ------------------------------------------------------------------------------------------ prepare


def prepare_video(path: str | os.PathLike, bundle: ModelBundle) -> PreparedVideo:
    """Decode ``path`` once and compute what `render` needs for ``bundle`` (cached per file version).

    Raises `UserInputError` for a missing, unreadable, video-less or zero-length file.
    """
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"video not found: {p}")
    st = p.stat()
    enc, codec = bundle.video_encoder.config, bundle.codec.config
    return _prepare_cached(
        str(p.resolve()),
        st.st_mtime_ns,
        st.st_size,
        enc.rate,
        enc.size,
        codec.sample_rate,
        codec.hop,
        bundle.cue_planner,
    )


@functools.lru_cache(maxsize=8)
def _prepare_cached(
    path: str,
    mtime_ns: int,
    size_bytes: int,
    rate: float,
    size: int,
    sample_rate: int,
    hop: int,
    planner: PlannerNet | None,
) -> PreparedVideo:
    """`prepare_video` behind the cache; mtime and size in the key make an edited file decode again (the
    planner, shared read-only by its bundle, keys by identity)."""
    times, arrays, info = _scan(path, size)  # native-rate frames, letterboxed to size x size
    n_samples = round(info.duration * sample_rate)
    if n_samples < 1:
        raise UserInputError(f"{Path(path).name} has zero length (duration {info.duration:.3f} s)")
    native = np.stack(arrays)  # (N_src, S, S, 3)
    t = np.asarray(times, dtype=np.float64)  # (N_src,) seconds
    frames = native[resample_indices(t, info.duration, rate)]  # (F, S, S, 3) at ``rate``
    # motion at the native rate and the planner's cues at its rate, both resampled to the latent frames
    # (the reference's sync features are 24 fps Synchformer features)
    if planner is not None and planner.config.size != size:
        raise ValueError(f"planner frames ({planner.config.size} px) must match the video encoder's ({size} px)")
    sync = sync_features(native, t, info.duration, sample_rate / hop, -(-n_samples // hop), planner)  # (T, Ds)
    frames.flags.writeable = False
    sync.flags.writeable = False
    return PreparedVideo(info, info.duration, sample_rate, n_samples, frames, rate, sync, hop)


# ------------------------------------------------------------------------------------ windows, joins


def plan_windows(n_frames: int, max_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(start, length) in latent frames of the windows that cover ``n_frames``.

    One window when ``n_frames <= max_frames``; else K windows of ``min(window, max_frames)`` frames
    spread evenly from 0 to the end, K the fewest for which neighbours overlap by at least ``overlap``
    (capped at a third of a window, so that crossfades never overlap each other).
    """
    if n_frames < 1 or max_frames < 1 or window < 1 or overlap < 0:
        raise ValueError(f"bad window plan: {n_frames=} {max_frames=} {window=} {overlap=}")
    if n_frames <= max_frames:
        return [(0, n_frames)]
    length = min(window, max_frames)
    overlap = min(overlap, length // 3)
    k = math.ceil((n_frames - overlap) / (length - overlap))  # >= 2 since n_frames > length
    step = (n_frames - length) / (k - 1)  # <= length - overlap by the choice of k
    return [(round(i * step), length) for i in range(k)]


def window_seed(seed: int, index: int) -> int:
    """Noise seed of window ``index``: the user seed for window 0 (and single-pass renders), a hash of
    (seed, index) for the others, so windows get independent noise and the same seed repeats exactly."""
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: a valid torch seed


def join_windows(pieces: list[np.ndarray], starts: list[int], n_samples: int, fade: int) -> np.ndarray:
    """Overlap-add windows ``pieces[k]`` (n_k, C) placed at sample ``starts[k]`` into (n_samples, C).

    Between neighbours the output crosses from one to the other over ``min(fade, overlap)`` samples in
    the middle of their overlap, with equal-power gains cos / sin (cos^2 + sin^2 = 1: the windows' noise
    is independent, so power, not amplitude, should stay constant); elsewhere exactly one window plays.
    """
    ends = [s + len(p) for s, p in zip(starts, pieces)]
    if starts[0] != 0 or ends[-1] != n_samples or any(ends[k] < starts[k + 1] for k in range(len(starts) - 1)):
        raise ValueError(f"windows must cover 0..{n_samples} with overlaps: {starts=} {ends=}")
    cuts = []  # (first sample, length) of each crossfade
    for k in range(len(pieces) - 1):
        length = min(fade, ends[k] - starts[k + 1])
        cuts.append(((starts[k + 1] + ends[k] - length) // 2, length))
    if any(a0 + l0 > a1 for (a0, l0), (a1, _) in zip(cuts, cuts[1:])):
        raise ValueError(f"crossfades overlap each other: {cuts=}; use shorter fades or longer windows")
    out = np.zeros((n_samples, pieces[0].shape[1]), dtype=np.float32)
    for k, piece in enumerate(pieces):
        gain = np.ones(len(piece), dtype=np.float64)
        if k > 0:
            _fade(gain, cuts[k - 1][0] - starts[k], cuts[k - 1][1], fade_in=True)
        if k < len(pieces) - 1:
            _fade(gain, cuts[k][0] - starts[k], cuts[k][1], fade_in=False)
        out[starts[k] : ends[k]] += (piece * gain[:, None]).astype(np.float32)
    return out


def _fade(gain: np.ndarray, at: int, length: int, fade_in: bool) -> None:
    """In place on a window's gain (n,): an equal-power fade over ``[at, at + length)`` (sin rising or cos
    falling, at sample centres), silence before a fade-in and after a fade-out."""
    u = np.pi / 2 * (np.arange(length) + 0.5) / max(length, 1)  # (length,) in (0, pi / 2)
    if fade_in:
        gain[:at] = 0.0
        gain[at : at + length] *= np.sin(u)
    else:
        gain[at : at + length] *= np.cos(u)
        gain[at + length :] = 0.0


def safety_limit(audio: np.ndarray, knee: float = SAFETY_KNEE) -> np.ndarray:
    """Per-take safety limiter: unchanged when every |x| <= 1; otherwise samples above ``knee`` are
    soft-clipped ``knee + (1 - knee) tanh((|x| - knee) / (1 - knee))`` (slope 1 at the knee, approaching
    1 but never beyond), and samples below the knee stay exactly as they were. No gain is applied to the take."""
    mag = np.abs(audio)
    if mag.max(initial=0.0) <= 1.0:
        return audio
    over = mag > knee
    out = audio.copy()
    out[over] = np.sign(audio[over]) * (knee + (1 - knee) * np.tanh((mag[over] - knee) / (1 - knee)))
    return out


# -------------------------------------------------------------------------------------------- render


def render_plan(prepared: PreparedVideo, bundle: ModelBundle, settings: RenderSettings) -> list[tuple[int, int]]:
    """The (start, length) windows in latent frames that `render` will sample for ``prepared``."""
    latent_rate = bundle.codec.config.latent_rate
    window, overlap = round(settings.window * latent_rate), round(settings.crossfade * latent_rate)
    return plan_windows(prepared.n_latent, bundle.generator.config.max_frames, max(window, 1), overlap)


def render(
    prepared: PreparedVideo,
    cot: Cot | dict,
    bundle: ModelBundle,
    settings: RenderSettings | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """One stereo take: (N, 2) float32 at ``bundle.sample_rate`` with N = ``prepared.n_samples`` exactly.

    ``progress(done, total)`` is called after every sampler step (total = steps x windows).
    """
    settings = settings or RenderSettings()
    cot = validate_cot(cot)
    _check_prepared(prepared, bundle)
    plan = render_plan(prepared, bundle, settings)
    total = len(plan) * settings.steps
    with torch.inference_mode(), _deterministic():
        text, negative = _encode_text(cot, bundle)
        pieces = []
        for k, (start, length) in enumerate(plan):
            step = None if progress is None else functools.partial(_report, progress, k * settings.steps, total)
            seed = window_seed(settings.seed, k)
            pieces.append(_render_window(prepared, bundle, cot, text, negative, settings, start, length, seed, step))
    fade = round(settings.crossfade * bundle.sample_rate)
    audio = join_windows(pieces, [s * prepared.hop for s, _ in plan], prepared.n_samples, fade)
    if not np.isfinite(audio).all():
        raise FoleyError(f"model {bundle.name!r} produced NaN or infinite samples; its weights may be damaged")
    return safety_limit(audio)


def _report(progress: Progress, offset: int, total: int, done: int, _steps: int) -> None:
    progress(offset + done, total)


def _check_prepared(prepared: PreparedVideo, bundle: ModelBundle) -> None:
    enc, codec = bundle.video_encoder.config, bundle.codec.config
    theirs = (prepared.sample_rate, prepared.hop, prepared.frame_rate, prepared.frames.shape[1])
    if theirs != (codec.sample_rate, codec.hop, enc.rate, enc.size):
        raise ValueError(
            f"video prepared for (sample_rate, hop, frame rate, size) = {theirs}, model {bundle.name!r} needs "
            f"{(codec.sample_rate, codec.hop, enc.rate, enc.size)}; call prepare_video with this bundle"
        )


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels while rendering (warn-only, so no op ever fails), then the previous mode."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _encode_text(cot: Cot, bundle: ModelBundle) -> tuple[list[TextBlock], TextBlock | None]:
    """The generator's four text slots for the CoT (B = 1) and its negative prompt (None when empty), on
    the bundle's device, exactly as the training cache builds them (`engine.generator.cot_text_blocks`)."""
    blocks = cot_text_blocks([cot], bundle.cot_mode)
    dev = bundle.device
    blocks = [(s.to(dev), m.to(dev)) for s, m in blocks]
    if not cot.negative:
        return blocks, None
    s, m = encode_negative([cot])
    return blocks, (s.to(dev), m.to(dev))


def cot_timeline(cot: Cot, bundle: ModelBundle, start: int, length: int) -> torch.Tensor | None:
    """The Temporal block's time track (1, length, K) of latent frames [start, start + length) of the video
    (`engine.timeline`; times count from the video's start), on the bundle's device; None for a generator
    that takes no timeline."""
    if not bundle.generator.config.timeline_dim:
        return None
    track = timeline_track(cot.temporal, length, bundle.codec.config.latent_rate, start)  # (length, K)
    return torch.from_numpy(track)[None].to(bundle.device)


def _video_tokens(prepared: PreparedVideo, bundle: ModelBundle, start: int, length: int) -> torch.Tensor:
    """Video tokens (1, F_w, Dv) of the encoder frames shown during latent frames [start, start + length)."""
    lr = prepared.sample_rate / prepared.hop  # latent frames per second
    rate, n = prepared.frame_rate, len(prepared.frames)
    i0 = min(math.floor(start / lr * rate + 1e-9), n - 1)  # the frame showing when the window starts
    i1 = max(min(math.ceil((start + length) / lr * rate - 1e-9), n), i0 + 1)
    frames = torch.tensor(prepared.frames[i0:i1], device=bundle.device)[None]  # (1, F_w, S, S, 3) uint8
    return bundle.video_encoder(frames)


def finish_latent(codec, z: torch.Tensor, sync, declick: bool, gate: bool) -> torch.Tensor:
    """What a sampled latent (B, C, T) goes through before decoding, in renders and RL rollouts alike:
    `Codec.declick`, then `Codec.gate_transients` where `engine.sync.event_gate` reads no event in the
    sync features (T, Ds) of its frames (nothing for a model without planner cues)."""
    if declick:
        z = codec.declick(z)
    closed = event_gate(sync) if gate else None  # None: no cues in the sync features
    if closed is not None:
        z = codec.gate_transients(z, closed.to(z.device)[None].expand(z.shape[0], -1))
    return z


def _render_window(
    prepared: PreparedVideo,
    bundle: ModelBundle,
    cot: Cot,
    text: list[TextBlock],
    negative: TextBlock | None,
    settings: RenderSettings,
    start: int,
    length: int,
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Sample latent frames [start, start + length) and decode them: (n, 2) float32, n = the window's
    samples (cropped at the end of the video)."""
    gen, dev = bundle.generator, bundle.device
    sync = torch.tensor(prepared.sync[start : start + length], device=dev)[None]  # (1, T, Ds)
    timeline = cot_timeline(cot, bundle, start, length)
    cond = gen.prepare_conditions(_video_tokens(prepared, bundle, start, length), None, sync, text, length, timeline)
    uncond = gen.null_like(cond, negative)
    noise = torch.randn((1, gen.config.latent_dim, length), generator=torch.Generator().manual_seed(seed))  # (1, C, T)
    velocity = generator_guidance(
        gen, cond, uncond, settings.cfg, settings.guidance_interval, settings.video_cfg, settings.rescale, frozen=True
    )
    z = sample_ode(velocity, noise.to(dev), settings.steps, settings.shift, progress)  # (1, C, T)
    z = finish_latent(bundle.codec, z, prepared.sync[start : start + length], settings.declick, settings.gate)
    n = min(length * prepared.hop, prepared.n_samples - start * prepared.hop)
    return bundle.codec.decode(z, n)[0].T.float().cpu().numpy()  # (1, 2, n) -> (n, 2)
