"""Training the default planner (`engine.planner.network.PlannerNet`) on FoleyWorld train scenes.

Targets come from the scene parameters that drew each frame, frame by frame and class by class:
visibility, event instants, horizontal position, apparent size and the intensity of continuous sources.
Frames are rendered on the fly (~40 ms a clip) into a sliding pool that is a pure function of the step,
and resized by `engine.video_encoder.frames_for_encoder`, the helper `engine.video_io.load_video` uses on
decoded files, so training frames and user videos look the same to the network. A step: keep the pool
current, draw a batch of crops, one optimiser step, EMA; `PlannerMethod` hands it to the one run loop
(`trainer.loop.run_loop`: log, checkpoint with the loop's record, stop_at; resumable exactly).
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as fn

from engine.media import write_mp4
from engine.planner.network import ClassInfo, PlannerConfig, PlannerNet, activate, load_planner_net, save_planner
from engine.video_encoder import frames_for_encoder
from engine.video_io import load_video
from trainer.foleyworld.classes import CLASSES
from trainer.foleyworld.scene import Scene, WorldConfig, sample_scene
from trainer.foleyworld.splits import clip_seed
from trainer.foleyworld.video import frame_times, render_frames
from trainer.loop import PoolMethod, Record, Schedule, parts_progress, run_loop
from trainer.run_state import cosine_lr, ema_decay, load_training_state, update_ema

Progress = Callable[[int, int, dict[str, float]], None]  # (step, total steps, averaged loss parts)
VISIBLE_X = 1.05  # a source counts as visible while its centre is within this of the frame centre


@dataclass(frozen=True)
class PlannerTrainConfig:
    """Everything that defines a planner training run."""

    steps: int = 3000  # optimiser steps (the cosine schedule ends here)
    batch: int = 8  # crops per step
    crop_frames: int = 48  # frames per crop (2 s at 24 fps; the temporal receptive field is ~1.3 s)
    lr: float = 2e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.05  # final learning rate as a fraction of ``lr``
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.995  # EMA decay of the saved weights (warmed up)
    event_pos_weight: float = 4.0  # BCE weight of event frames (about 1 frame in 20 is one)
    pool_size: int = 256  # clips held in memory (~2.6 MB each at 64 px, 9 s)
    pool_refresh_every: int = 25  # steps between pool refreshes
    pool_refresh_count: int = 16  # clips replaced at each refresh
    via_mp4: bool = True  # training clips go through an H.264 file like users' videos (see `clip_example`)
    rate: float = 24.0  # planner frame rate (see engine.planner.network.PlannerConfig)
    size: int = 64  # planner frame size
    log_every: int = 50  # steps between progress reports
    ckpt_every: int = 250  # steps between checkpoints
    seed: int = 0  # seeds the initial weights and the crop RNG
    stop_at: int | None = None  # stop (checkpoint, no final model) at this step; resume later
    device: str = "cpu"  # where the network trains ("cuda" on a GPU machine); clips render on the CPU
    workers: int = 1  # processes rendering the pool's clips (each clip is a function of its index alone)
    init: str | None = None  # start from this planner file's weights instead of a fresh initialisation
    first_scene: int = 0  # train scene index of the first pool (a warm-started run can go on to unseen scenes)
    layout: str = "frame"  # the network's layout after its convolutions (`engine.planner.network.PlannerConfig`)
    channels: tuple[int, ...] = (24, 48, 64)  # its stride-2 convolutions' widths
    width: int = 128  # its feature width over time
    flip: bool = False  # mirror half the crops left to right (positions negated): the world has no handedness

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.crop_frames < 8 or self.pool_size < 1 or self.first_scene < 0:
            raise ValueError(
                f"need positive sizes: {self.steps=} {self.batch=} {self.crop_frames=} {self.pool_size=} "
                f"and {self.first_scene=} >= 0"
            )


def planner_classes() -> tuple[ClassInfo, ...]:
    """FoleyWorld's classes as the planner stores them (its output order)."""
    return tuple(ClassInfo(c.name, c.family, c.kind, c.moving, c.min_gap) for c in CLASSES.values())


def clip_targets(scene: Scene, n_frames: int, rate: float, classes: tuple[ClassInfo, ...]) -> dict[str, np.ndarray]:
    """Per-frame, per-class targets (F, C) float32 of a scene: ``present``, ``event`` (1 at the frame
    nearest each event, 0.3 at its neighbours), ``x``, ``size``, ``level`` and ``level_mask`` (1 where a
    visible continuous source has a level to learn)."""
    names = [c.name for c in classes]
    t = np.arange(n_frames) / rate  # frame k shows time k / rate
    out = {k: np.zeros((n_frames, len(names)), np.float32) for k in ("present", "event", "x", "size", "level")}
    out["level_mask"] = np.zeros((n_frames, len(names)), np.float32)
    for src in scene.sources:
        if src.offscreen or src.cls not in names:
            continue
        c = names.index(src.cls)
        x = src.x_at(t)
        vis = np.abs(x) <= VISIBLE_X
        out["present"][:, c] = vis
        out["x"][:, c], out["size"][:, c] = x, src.size
        if src.curve:
            out["level"][:, c], out["level_mask"][:, c] = src.intensity_at(t), vis
        for e in src.events:
            k = int(round(e * rate))
            for j, v in ((k - 1, 0.3), (k, 1.0), (k + 1, 0.3)):
                if 0 <= j < n_frames:
                    out["event"][j, c] = max(out["event"][j, c], v)
    return out


def train_scene(index: int) -> Scene:
    """FoleyWorld train scene ``index`` (the generator's training scenes, and beyond)."""
    seed = clip_seed("train", index)
    return sample_scene(seed, WorldConfig(), split="train")


def decoded_like_a_file(rendered: np.ndarray, fps: float, rate: float, size: int) -> np.ndarray:
    """Rendered frames (N, H, W, 3) at ``fps`` -> (F, size, size, 3) uint8 at ``rate`` after an H.264 file
    and `engine.video_io.load_video`: what the planner sees of a user's video."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_mp4(path, rendered, fps)
        return load_video(path, rate=rate, size=size).frames


def clip_example(scene: Scene, config: PlannerTrainConfig, classes: tuple[ClassInfo, ...]) -> dict[str, np.ndarray]:
    """Frames (F, S, S, 3) uint8 at the planner's rate and size, plus the targets of `clip_targets`.

    With ``config.via_mp4`` the rendered frames go through an H.264 file and `engine.video_io.load_video`,
    exactly the path of a user's video (compression included: raw frames alone leave a visible gap).
    """
    cfg = scene.config
    if config.via_mp4:
        frames = decoded_like_a_file(render_frames(scene), cfg.fps, config.rate, config.size)
    else:
        frames = frames_for_encoder(render_frames(scene), frame_times(cfg), cfg.duration, config.rate, config.size)
    return {"frames": frames, **clip_targets(scene, len(frames), config.rate, classes)}


def _render_example(job: tuple[int, PlannerTrainConfig, tuple[ClassInfo, ...]]) -> dict[str, np.ndarray]:
    """`clip_example` of train scene ``index`` (a pool worker's job)."""
    index, config, classes = job
    return clip_example(train_scene(index), config, classes)


class ScenePool:
    """A sliding window of rendered train clips, a pure function of the training step."""

    def __init__(self, *, config: PlannerTrainConfig, classes: tuple[ClassInfo, ...]) -> None:
        self.config, self.classes = config, classes
        self.clips: dict[int, dict[str, np.ndarray]] = {}

    def window(self, step: int) -> range:
        """Clip indices in the pool at ``step``."""
        c = self.config
        start = c.first_scene + (step // c.pool_refresh_every) * c.pool_refresh_count
        return range(start, start + c.pool_size)

    def update(self, step: int) -> None:
        """Render the clips that entered the window at ``step``; forget those that left."""
        want = self.window(step)
        self.clips = {i: v for i, v in self.clips.items() if i in want}
        new = [i for i in want if i not in self.clips]
        if self.config.workers > 1 and len(new) > 1:
            ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
            with ctx.Pool(min(self.config.workers, len(new))) as pool:
                done = pool.map(_render_example, [(i, self.config, self.classes) for i in new])
        else:
            done = [_render_example((i, self.config, self.classes)) for i in new]
        self.clips |= dict(zip(new, done))

    def batch(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Random crops of ``crop_frames`` frames: frames (B, F, S, S, 3) uint8, targets (B, F, C)."""
        keys, n = sorted(self.clips), self.config.crop_frames
        items = []
        for _ in range(self.config.batch):
            clip = self.clips[keys[int(torch.randint(len(keys), (1,), generator=gen))]]
            off = int(torch.randint(len(clip["frames"]) - n + 1, (1,), generator=gen))
            item = {k: v[off : off + n] for k, v in clip.items()}
            if self.config.flip and bool(torch.randint(2, (1,), generator=gen)):
                item = mirrored(item)
            items.append(item)
        return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}


def mirrored(item: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A crop mirrored left to right: frames (F, S, S, 3) flipped along their width, positions negated; the
    other targets (visibility, events, size, level) are the same."""
    return item | {"frames": np.ascontiguousarray(item["frames"][:, :, ::-1]), "x": -item["x"]}


def planner_loss(out: torch.Tensor, batch: dict[str, torch.Tensor], pos_weight: float) -> tuple[torch.Tensor, dict]:
    """Sum of the head losses for outputs (B, F, C, H): BCE for visibility and events, L1 for position,
    size and level where they are defined; returns (loss, parts as floats)."""
    h = activate(out)
    vis, pos = batch["present"], torch.tensor(pos_weight, device=out.device)
    parts = {
        "present": fn.binary_cross_entropy_with_logits(h["present"], vis),
        "event": fn.binary_cross_entropy_with_logits(h["event"], batch["event"], pos_weight=pos),
        "x": ((h["x"] - batch["x"]).abs() * vis).sum() / vis.sum().clamp(min=1.0),
        "size": ((h["size"] - batch["size"]).abs() * vis).sum() / vis.sum().clamp(min=1.0),
        "level": ((h["level"] - batch["level"]).abs() * batch["level_mask"]).sum()
        / batch["level_mask"].sum().clamp(min=1.0),
    }
    loss = sum(parts.values())
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def network_config(config: PlannerTrainConfig) -> PlannerConfig:
    """The network a run trains (FoleyWorld's classes; sizes and layout from the run's config)."""
    c = config
    return PlannerConfig(
        classes=planner_classes(), rate=c.rate, size=c.size, channels=c.channels, width=c.width, layout=c.layout
    )


def new_training_state(config: PlannerTrainConfig) -> dict:
    """Freshly initialised planner, EMA copy, AdamW and crop RNG (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    model = PlannerNet(config=network_config(config))
    if config.init:
        start = load_planner_net(config.init)
        if start.config != model.config:
            raise ValueError(f"planner {config.init} has another configuration than this run")
        model.load_state_dict(start.state_dict())
    model.to(config.device)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    return {
        "config": config,
        "model": model,
        "ema": copy.deepcopy(model).requires_grad_(False),
        "optim": optim,
        "gen": torch.Generator().manual_seed(config.seed),
    }


def train_step(state: dict, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
    """One optimiser step and the EMA update; returns the loss parts."""
    c, model, optim = state["config"], state["model"], state["optim"]
    for group in optim.param_groups:
        group["lr"] = cosine_lr(step, c.lr, c.warmup, c.steps, c.min_lr_ratio)
    model.train()
    batch = {k: v.to(c.device) for k, v in batch.items()}
    loss, parts = planner_loss(model(batch["frames"]), batch, c.event_pos_weight)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip))
    optim.step()
    update_ema(state["ema"], model, ema_decay(step, c.ema_decay))
    return parts


class PlannerMethod(PoolMethod):
    """Planner training as the loop drives it: the training state and the scene pool; no held-out data."""

    def __init__(self, config: PlannerTrainConfig, out_path: Path) -> None:
        self.config, self.out_path = config, out_path
        self.ckpt, self.state = out_path.with_suffix(".ckpt.safetensors"), new_training_state(config)
        self.pool = ScenePool(config=config, classes=planner_classes())

    def restore(self) -> tuple[int, Record]:
        fields = ("rate", "size", "layout", "channels", "width", "flip")  # an older checkpoint: their defaults
        before = json.loads(json.dumps(asdict(PlannerTrainConfig())))  # as the saved configs read (lists)
        step = load_training_state(self.ckpt, self.state, fields, before)
        return step, Record.from_extra(self.state.get("extra"))

    def train_step(self, state: dict, batch, step: int) -> dict:
        return train_step(state, batch, step)

    def finish(self, step: int, record: Record, progress) -> dict:
        save_planner(self.state["ema"].cpu(), self.out_path)
        return {}


def train_planner(
    out_path: str | Path, config: PlannerTrainConfig, resume: bool = True, progress: Progress | None = None
) -> dict:
    """Train (or resume) the planner and write its EMA weights to ``out_path`` (a .safetensors file).

    The training state lives in ``<out>.ckpt.safetensors``; with ``resume`` an existing one is continued.
    Returns ``{"path", "finished", "step", "resumed_from", "seconds", "params", "history"}`` (history: the
    whole run's `trainer.loop` entries).
    """
    out_path, c = Path(out_path), config
    method, t0 = PlannerMethod(c, out_path), time.perf_counter()
    start, record = method.restore() if resume and method.ckpt.is_file() else (0, Record())
    every = dict(log_every=c.log_every, ckpt_every=c.ckpt_every, stop_at=c.stop_at, eval_start=False)
    end = run_loop(method, Schedule(steps=c.steps, **every), record, start, None, parts_progress(progress))
    return {
        "path": str(out_path) if end.finished else None,
        "finished": end.finished,
        "step": end.step,
        "resumed_from": start,
        "seconds": round(time.perf_counter() - t0, 1),
        "params": method.state["model"].num_parameters(),
        "history": record.history,
        "config": asdict(c),
    }
