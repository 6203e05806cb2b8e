"""Training the stereo codec's decoder (`engine.codec.Codec`) on random crops of FoleyWorld audio.

A step is named parts: keep the clip pool current, draw a batch of crops, take an optimiser step, update
the EMA; `CodecMethod` hands it to the one run loop (`trainer.loop.run_loop`: log, checkpoint, stop_at).
Everything that decides the next step (weights, EMA, AdamW moments, step, the crop RNG, the loop's
record) is in the checkpoint, and the clip pool is a pure function of the step, so a resumed run
reproduces an uninterrupted one exactly. The encoder is the codec's fixed analysis, so
the latent normalisation statistics are measured first (on generator-length clips) and never change;
at the end the EMA weights are written with `engine.codec.save_codec`.

The data is generated on the fly: a sliding window of ``pool_size`` FoleyWorld ``train`` clips is held
in memory; every ``pool_refresh_every`` steps the oldest ``pool_refresh_count`` clips leave and as many
new ones arrive (clip generation costs ~25 ms per second of audio, cheap next to training).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from engine.codec import CODEC_PRESETS, LOG_MAG_CENTRE, LOG_MAG_SCALE, Codec, save_codec
from trainer.foleyworld.scene import WorldConfig
from trainer.foleyworld.splits import make_clip
from trainer.loop import PoolMethod, Record, Schedule, parts_progress, run_loop
from trainer.losses import codec_feature_loss
from trainer.run_state import cosine_lr, ema_decay, load_training_state, update_ema

Progress = Callable[[int, int, dict[str, float]], None]  # (step, total steps, averaged loss parts)


@dataclass(frozen=True)
class CodecTrainConfig:
    """Everything that defines a codec training run."""

    preset: str = "default"  # key of engine.codec.CODEC_PRESETS
    steps: int = 6_000  # optimiser steps of the whole run (the cosine schedule ends here)
    batch: int = 16  # crops per step
    crop_seconds: float = 1.5  # crop length in seconds
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.05  # final learning rate as a fraction of ``lr``
    warmup: int = 200  # linear warm-up steps
    betas: tuple[float, float] = (0.8, 0.99)  # AdamW betas (the values of HiFi-GAN / DAC)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999  # EMA decay of the saved weights (warmed up, see `_ema_decay`)
    gain_db: float = 12.0  # crops are attenuated by a random 0..gain_db dB (level robustness)
    swap_prob: float = 0.5  # chance of swapping left and right of a crop (the world is left/right symmetric)
    clip_seconds: float = 4.0  # length of the generated FoleyWorld clips in the pool
    pool_size: int = 192  # clips held in memory
    pool_refresh_every: int = 250  # steps between pool refreshes
    pool_refresh_count: int = 16  # clips replaced at each refresh
    stats_clips: int = 32  # train clips encoded to measure the latent mean/std at the end
    stats_seconds: float = 9.0  # their length: the generator's window, so its latents get unit scale
    log_every: int = 50  # steps between progress reports (loss parts averaged over them)
    ckpt_every: int = 500  # steps between checkpoints
    seed: int = 0  # seeds the initial weights and the crop RNG
    stop_at: int | None = None  # stop (checkpoint, no final model) at this step; resume later

    def __post_init__(self) -> None:
        if self.preset not in CODEC_PRESETS:
            raise ValueError(f"unknown codec preset {self.preset!r}; choose one of {', '.join(CODEC_PRESETS)}")
        if self.steps < 1 or self.batch < 1 or self.pool_size < 1 or self.stats_clips < 1:
            raise ValueError(f"need positive sizes: {self.steps=} {self.batch=} {self.pool_size=} {self.stats_clips=}")
        if not 0 < self.crop_seconds <= self.clip_seconds:
            raise ValueError(f"need 0 < crop_seconds <= clip_seconds, got {self.crop_seconds=} {self.clip_seconds=}")

    @property
    def crop_samples(self) -> int:
        """Crop length in samples."""
        return round(self.crop_seconds * CODEC_PRESETS[self.preset].sample_rate)


# ----------------------------------------------------------------------------- data


class ClipPool:
    """A sliding window of FoleyWorld train clips, a pure function of the training step."""

    def __init__(self, *, config: CodecTrainConfig) -> None:
        self.config = config
        rate = CODEC_PRESETS[config.preset].sample_rate
        self.world = WorldConfig(duration=config.clip_seconds, sample_rate=rate)  # how clips are drawn
        self.clips: dict[int, torch.Tensor] = {}  # clip index -> (2, N) waveform

    def window(self, step: int) -> range:
        """Clip indices in the pool at ``step``."""
        c = self.config
        start = (step // c.pool_refresh_every) * c.pool_refresh_count
        return range(start, start + c.pool_size)

    def update(self, step: int) -> None:
        """Generate the clips that entered the window at ``step``, forget those that left."""
        want = self.window(step)
        self.clips = {i: a for i, a in self.clips.items() if i in want}
        for i in want:
            if i not in self.clips:
                audio = make_clip("train", i, self.world).audio.audio  # (N, 2) float32
                self.clips[i] = torch.from_numpy(audio.T.copy())  # (2, N)

    def batch(self, gen: torch.Generator) -> torch.Tensor:
        """A batch of random crops (B, 2, crop_samples): random clip, offset, gain and left/right swap."""
        c = self.config
        keys = sorted(self.clips)
        crops = []
        for _ in range(c.batch):
            audio = self.clips[keys[int(torch.randint(len(keys), (1,), generator=gen))]]
            off = int(torch.randint(audio.shape[1] - c.crop_samples + 1, (1,), generator=gen))
            crop = audio[:, off : off + c.crop_samples]  # (2, N)
            gain = 10.0 ** (-c.gain_db * float(torch.rand((), generator=gen)) / 20.0)
            swap = float(torch.rand((), generator=gen)) < c.swap_prob
            crops.append((crop.flip(0) if swap else crop) * gain)
        return torch.stack(crops)  # (B, 2, N)


def lr_at(step: int, config: CodecTrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine to ``min_lr_ratio``."""
    return cosine_lr(step, config.lr, config.warmup, config.steps, config.min_lr_ratio)


def checkpoint_path(out_path: Path) -> Path:
    """Where the training state of ``out_path`` lives: ``<out>.ckpt.safetensors``."""
    return out_path.with_suffix(".ckpt.safetensors")


# ----------------------------------------------------------------------------- the loop


def new_training_state(config: CodecTrainConfig) -> dict:
    """Freshly initialised model, EMA copy, AdamW and crop RNG (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    model = Codec(config=CODEC_PRESETS[config.preset])
    model.set_latent_stats(*measure_latent_stats(model, latent_stats_clips(config)))  # the encoder is fixed
    optim = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, foreach=False
    )
    return {
        "config": config,
        "model": model,
        "ema": copy.deepcopy(model).requires_grad_(False),
        "optim": optim,
        "gen": torch.Generator().manual_seed(config.seed),
    }


def train_step(state: dict, audio: torch.Tensor, step: int) -> dict[str, float]:
    """One optimiser step of the decoder on a batch (B, 2, N) and the EMA update; returns the loss parts."""
    c, model, optim = state["config"], state["model"], state["optim"]
    for group in optim.param_groups:
        group["lr"] = lr_at(step, c)
    model.train()
    with torch.no_grad():
        target = model.analyse(audio)  # the fixed encoder: raw latent and the log-magnitude target
        z = (target["latent"] - model.latent_mean[:, None]) / model.latent_std[:, None]
    pred = (model.decode_log_mag(z) - LOG_MAG_CENTRE) / LOG_MAG_SCALE  # (B, F, 8T) normalised
    loss, parts = codec_feature_loss(pred, target["features"])
    optim.zero_grad(set_to_none=True)
    loss.backward()
    parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip))
    optim.step()
    update_ema(state["ema"], model, ema_decay(step, c.ema_decay))
    return parts


@torch.no_grad()
def measure_latent_stats(codec: Codec, clips: list[torch.Tensor], chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) of the bounded latent over equal-length clips, each (2, N)."""
    codec.eval()
    parts = [codec.encode_raw(torch.stack(clips[i : i + chunk])) for i in range(0, len(clips), chunk)]
    z = torch.cat(parts)  # (K, C, T)
    z = z.transpose(0, 1).reshape(z.shape[1], -1)  # (C, K * T)
    return z.mean(dim=1), z.std(dim=1)


def latent_stats_clips(config: CodecTrainConfig) -> list[torch.Tensor]:
    """The first ``stats_clips`` FoleyWorld train clips at ``stats_seconds``, each (2, N)."""
    world = WorldConfig(duration=config.stats_seconds, sample_rate=CODEC_PRESETS[config.preset].sample_rate)
    return [torch.from_numpy(make_clip("train", i, world).audio.audio.T.copy()) for i in range(config.stats_clips)]


class CodecMethod(PoolMethod):
    """Codec training as the loop drives it: the training state and the clip pool; no held-out data."""

    def __init__(self, config: CodecTrainConfig, out_path: Path) -> None:
        self.config, self.out_path, self.ckpt = config, out_path, checkpoint_path(out_path)
        self.state, self.pool = new_training_state(config), ClipPool(config=config)

    def restore(self) -> tuple[int, Record]:
        step = load_training_state(self.ckpt, self.state, ("preset",))
        return step, Record.from_extra(self.state.get("extra"))

    def train_step(self, state: dict, batch, step: int) -> dict:
        return train_step(state, batch, step)

    def finish(self, step: int, record: Record, progress) -> dict:
        """Write the EMA codec (its latent statistics were measured before training)."""
        extra = {"train": asdict(self.config), "final": record.history[-1] if record.history else {}}
        save_codec(self.state["ema"], self.out_path, extra=extra)
        return {}


def run_codec_training(
    out_path: str | Path, config: CodecTrainConfig, resume: bool = True, progress: Progress | None = None
) -> dict:
    """Train (or resume) a codec as described by ``config``; see `train_codec` for the result."""
    out_path, c = Path(out_path), config
    out_path.parent.mkdir(parents=True, exist_ok=True)
    method, t0 = CodecMethod(c, out_path), time.perf_counter()
    start, record = method.restore() if resume and method.ckpt.is_file() else (0, Record())
    every = dict(log_every=c.log_every, ckpt_every=c.ckpt_every, stop_at=c.stop_at, eval_start=False)
    end = run_loop(method, Schedule(steps=c.steps, **every), record, start, None, parts_progress(progress))
    seconds = time.perf_counter() - t0
    return {
        "path": str(out_path) if end.finished else None,
        "checkpoint": str(method.ckpt),
        "finished": end.finished,
        "step": end.step,
        "resumed_from": start,
        "seconds": round(seconds, 3),
        "steps_per_second": round((end.step - start) / max(seconds, 1e-9), 3),
        "params": sum(p.numel() for p in method.state["model"].parameters()),
        "history": record.history,
    }


def train_codec(
    out_path: str | Path,
    preset: str = "default",
    steps: int = 6_000,
    batch: int = 16,
    crop_seconds: float = 1.5,
    lr: float = 1e-3,
    seed: int = 0,
    resume: bool = True,
    progress: Progress | None = None,
    **options,
) -> dict:
    """Train the codec ``preset`` on FoleyWorld crops and write it (EMA weights) to ``out_path``.

    crop_seconds: crop length in seconds; lr: peak AdamW learning rate; ``options``: any other
    `CodecTrainConfig` field (e.g. ``pool_size``, ``ckpt_every``, ``stop_at``).
    The training state is checkpointed to ``<out_path>.ckpt.safetensors``; with ``resume`` an existing
    checkpoint is continued. ``progress(step, steps, parts)`` gets the loss parts every ``log_every`` steps.
    Returns ``{"path", "checkpoint", "finished", "step", "resumed_from", "seconds", "steps_per_second",
    "params", "history"}`` (history: the logged loss parts of the whole run, `trainer.loop` entries).
    """
    config = CodecTrainConfig(
        preset=preset, steps=steps, batch=batch, crop_seconds=crop_seconds, lr=lr, seed=seed, **options
    )
    return run_codec_training(out_path, config, resume=resume, progress=progress)
