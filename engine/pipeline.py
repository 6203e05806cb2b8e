"""The render pipeline: a video and a four-block CoT in, stereo audio exactly as long as the video out.

Every caller renders through these functions, and they reach the model only through the model family
interface (`engine.family.ModelFamily`; the shipped bundle is `engine.bundle.ModelBundle`):

- `prepare_video` decodes a video once (`ModelFamily.prepare`, cached per file version, never mutated);
- `render` turns a prepared video, a CoT and `RenderSettings` into ``(N, 2)`` float32 audio with
  ``N = round(duration * sample_rate)`` exactly, whatever the frame rate; `render_takes` makes several
  takes of one video and CoT (best-of-N) with the CoT encoded once and each window's conditions shared.
  Videos that fit the generator (``max_frames`` latent frames, ~12 s for the shipped model) render in one
  pass; longer ones render as overlapping windows joined by equal-power crossfades (what users of the
  reference asked for, DESIGN "What users ... ask for"), each window conditioned on its own slice of the
  video and on the same CoT, its noise seeded from the user seed and the window index.

Guidance is classifier-free with its branches in one batch (`engine.generator.generator_guidance`); by
default it is split: the text is weighed by ``cfg`` and the picture and motion on top of it by
``video_cfg``, and the sampled latent is finished (de-clicked, weak rises gated where the picture shows
no event: `engine.bundle.finish_latent`) before decoding. No loudness or peak normalisation across takes
(a defect of the reference): each take is only passed through `safety_limit`, which touches nothing
unless a sample exceeds full scale.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.cot import Cot, validate_cot
from engine.errors import FoleyError, UserInputError
from engine.family import Finish, Guidance, ModelFamily
from engine.prepared import PreparedVideo
from engine.sampling import sample_ode

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

    @property
    def guidance(self) -> Guidance:
        """The guidance part of the settings, as a model family takes it."""
        return Guidance(self.cfg, self.guidance_interval, self.video_cfg, self.rescale)

    @property
    def finish(self) -> Finish:
        """What the sampled latent goes through before decoding."""
        return Finish(self.declick, self.gate)


# ------------------------------------------------------------------------------------------ prepare


def prepare_video(path: str | os.PathLike, model: ModelFamily) -> PreparedVideo:
    """Decode ``path`` once and compute what `render` needs for ``model`` (`ModelFamily.prepare`: cached per
    file version). Raises `UserInputError` for a missing, unreadable, video-less or zero-length file."""
    return model.prepare(path)


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


def render_plan(prepared: PreparedVideo, model: ModelFamily, settings: RenderSettings) -> list[tuple[int, int]]:
    """The (start, length) windows in latent frames that `render` will sample for ``prepared``."""
    window, overlap = round(settings.window * model.latent_rate), round(settings.crossfade * model.latent_rate)
    return plan_windows(prepared.n_latent, model.max_frames, max(window, 1), overlap)


def render(
    prepared: PreparedVideo,
    cot: Cot | dict,
    model: ModelFamily,
    settings: RenderSettings | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """One stereo take: (N, 2) float32 at ``model.sample_rate`` with N = ``prepared.n_samples`` exactly.

    ``progress(done, total)`` is called after every sampler step (total = steps x windows).
    """
    settings = settings or RenderSettings()
    return render_takes(prepared, cot, model, settings, [settings.seed], progress)[0]


def render_takes(
    prepared: PreparedVideo,
    cot: Cot | dict,
    model: ModelFamily,
    settings: RenderSettings,
    seeds: Sequence[int],
    progress: Progress | None = None,
    batch: bool = False,
) -> list[np.ndarray]:
    """One take per seed of ``seeds`` (``settings.seed`` is not used), each (N, 2) float32 as `render`
    makes it. The CoT is encoded once, and every window's conditions and guided velocity (its context
    projected once) are shared by all the takes. ``batch``: the takes of a window are sampled as one batch
    (worth it where a batch costs little more than one row, on a GPU; on a 2-core CPU a batch of 4 costs
    3.5x one row and the last bits differ from a take rendered alone, docs/RESULTS.md), else one after
    another, each bit-identical to rendering its seed alone. ``progress(done, total)``: total = steps x
    windows x takes."""
    cot = validate_cot(cot)
    plan = render_plan(prepared, model, settings)
    counter = _Counter(progress, len(plan) * settings.steps * len(seeds))
    groups = [list(range(len(seeds)))] if batch else [[i] for i in range(len(seeds))]
    pieces: list[list[np.ndarray]] = [[] for _ in seeds]
    with torch.inference_mode(), _deterministic():
        text = model.encode_cot(cot)
        for k, (start, length) in enumerate(plan):
            cond, uncond = model.window_conditions(prepared, text, start, length)
            velocity = {}  # rows per pass -> the guided velocity, built once per window
            for group in groups:
                rows = len(group)
                if rows not in velocity:
                    velocity[rows] = model.guided_velocity(cond, uncond, settings.guidance, batch=rows)
                noise = torch.cat([model.noise(window_seed(seeds[i], k), length) for i in group])  # (G, C, T)
                z = sample_ode(velocity[rows], noise, settings.steps, settings.shift, counter.step(rows))
                for j, i in enumerate(group):  # decoded one by one: a batched decode costs more on a CPU
                    pieces[i].append(model.decode_window(z[j : j + 1], prepared, start, length, settings.finish)[0])
    fade = round(settings.crossfade * model.sample_rate)
    starts = [s * prepared.hop for s, _ in plan]
    return [_finish_take(join_windows(p, starts, prepared.n_samples, fade), model) for p in pieces]


def _finish_take(audio: np.ndarray, model: ModelFamily) -> np.ndarray:
    if not np.isfinite(audio).all():
        raise FoleyError(f"model {model.name!r} produced NaN or infinite samples; its weights may be damaged")
    return safety_limit(audio)


class _Counter:
    """Sampler steps done over every window and take of a render, reported as ``progress(done, total)``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def step(self, rows: int) -> Callable[[int, int], None] | None:
        """The sampler's callback for a pass of ``rows`` takes starting now."""
        if self.progress is None:
            return None
        offset = self.done

        def report(done: int, _steps: int) -> None:
            self.done = offset + rows * done
            self.progress(self.done, self.total)

        return report


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
