"""Pretraining the generator and the video encoder with rectified flow on the feature cache.

The objective (REFERENCE "Flow matching"): ``|| v_theta(x_t, t, c) - (x1 - x0) ||^2`` with codec latents
``x0``, Gaussian noise ``x1``, ``t`` from a logit-normal, and per-modality classifier-free-guidance dropout
of (video + sync) and text (`engine.generator.Generator.drop_conditions`). The video encoder is trained
jointly: its tokens are part of the condition ``c``. Everything else (latents, motion, text states) comes
from the cache of `trainer.feature_cache`.

A step is named parts (draw a batch, `train_step`, EMA) run by `accelerate.Accelerator`, so the same
command trains on the CPU, on one GPU or with several processes; `PretrainMethod` hands it to the one run
loop (`trainer.loop.run_loop`: log, checkpoint, stop_at). Reproducibility and resumption:

- the data order is a pure function of (seed, step) (`BatchOrder`): a resumed run sees the same batches;
- the noise, times and dropout of step s come from a generator seeded by (seed, step, process), not from
  a stream, so they do not depend on how many steps ran before in this process;
- a checkpoint (`accelerator.save_state`) holds the model, optimizer, EMA, LR scheduler, RNG states and
  the run state (step, data-order fingerprint, the loop's record); it is written to a temporary folder and
  renamed, and a run resumes from the newest complete one.

At the end ``out/`` becomes a model folder in the layout `engine.bundle.load_bundle` reads: a copy of the
codec (``codec.safetensors``), the EMA generator and video encoder as float16 safetensors (loaded back as
float32) and ``model.json`` (CoT mode, rates, text settings, where the codec came from, the training config);
`load_pretrained` reads the trained parts back.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.atomic import copy_file, write_text
from engine.bundle import PLANNER_FILE
from engine.errors import UserInputError
from engine.generator import COT_MODES, GENERATOR_PRESETS, Conditions, Generator, load_generator, save_generator
from engine.timeline import TIMELINE_DIM
from engine.video_encoder import (
    VIDEO_ENCODER_PRESETS,
    VideoEncoder,
    load_video_encoder,
    save_video_encoder,
)
from trainer.feature_cache import CropCollate, FeatureDataset, load_index
from trainer.loop import Accelerated, Record, Schedule, parts_progress, run_loop
from trainer.losses import flow_matching_loss, logit_normal_times

Progress = Callable[[int, int, dict], None]  # (step, total steps, logged values)
MANIFEST = "model.json"  # the manifest of a trained model folder (an `engine.bundle` bundle)
FORMAT = "foley-model/1"  # its "format"
FILES = {  # part -> file name inside the folder (the layout `engine.bundle.load_bundle` reads)
    "codec": "codec.safetensors",
    "generator": "generator.safetensors",
    "video_encoder": "video_encoder.safetensors",
}


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run."""

    preset: str = "default"  # key of engine.generator.GENERATOR_PRESETS (its input widths follow the data)
    video_preset: str = "default"  # key of engine.video_encoder.VIDEO_ENCODER_PRESETS
    cot_mode: str = "decomposed"  # how the CoT reaches the generator: decomposed, monolithic or none
    steps: int = 20_000  # optimiser steps of the whole run (the cosine schedule ends here)
    batch: int = 16  # clips per step and process
    lr: float = 3e-4  # peak AdamW learning rate
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of ``lr``
    warmup: int = 500  # linear warm-up steps
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999  # EMA decay of the saved weights (warmed up, see `ema_decay_at`)
    cond_dropout: float = 0.1  # probability of nulling (video + sync), and independently text, per clip
    t_mean: float = 0.0  # logit-normal mean of the training times t (SD3's default 0)
    t_std: float = 1.0  # logit-normal std of t
    ckpt_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    log_every: int = 50  # steps between progress reports (values averaged over them)
    seed: int = 0  # seeds the initial weights, the data order and every step's noise
    cache: str = "data/features/train"  # feature cache folder (trainer.feature_cache)
    out: str = "runs/pretrain"  # output folder: final weights, model.json, checkpoints/, train_log.jsonl
    codec: str | None = None  # codec file named in model.json (default: the one the cache was built with)
    clips: int | None = None  # train on the first N clips of the cache (None: all)
    bucket: int = 32  # batches per length-sorting group of `BatchOrder` (only matters for mixed lengths)
    workers: int = 0  # DataLoader worker processes (0: load in the training process; fine on CPU)
    mixed_precision: str | None = None  # "no", "bf16" (GPU) or "fp16"; None: accelerate's env/config decides
    threads: int | None = None  # torch CPU threads for this run (None: leave as is)
    stop_at: int | None = None  # stop (checkpoint, no final model) at this step; resume later
    init: str | None = None  # start from this model folder's generator and video encoder (`continue_from`)
    recue: bool = False  # with init: the cache's sync cues may come from another planner network of the same
    #                      classes and width than the one ``init`` was trained on; the run re-learns them
    timeline: bool = False  # decomposed only: the generator takes the Temporal block's time track (engine.timeline)

    def __post_init__(self) -> None:
        if self.preset not in GENERATOR_PRESETS:
            raise UserInputError(
                f"unknown generator preset {self.preset!r}; choose one of {', '.join(GENERATOR_PRESETS)}"
            )
        if self.video_preset not in VIDEO_ENCODER_PRESETS:
            raise UserInputError(
                f"unknown video encoder preset {self.video_preset!r}; choose one of {', '.join(VIDEO_ENCODER_PRESETS)}"
            )
        if self.cot_mode not in COT_MODES:
            raise UserInputError(f"unknown cot mode {self.cot_mode!r}; choose one of {', '.join(COT_MODES)}")
        if self.timeline and self.cot_mode != "decomposed":
            raise UserInputError(f"--timeline needs the decomposed CoT (a Temporal block), not {self.cot_mode!r}")
        if min(self.steps, self.batch, self.ckpt_every, self.log_every, self.keep_checkpoints, self.bucket) < 1:
            raise UserInputError(f"steps, batch, ckpt_every, log_every, keep_checkpoints, bucket must be >= 1: {self}")
        if not 0.0 <= self.cond_dropout < 1.0 or self.lr <= 0 or self.t_std <= 0:
            raise UserInputError(f"need 0 <= cond_dropout < 1, lr > 0, t_std > 0: {self}")

    @property
    def checkpoints(self) -> Path:
        """Folder of the training checkpoints."""
        return Path(self.out) / "checkpoints"


# ------------------------------------------------------------------------------------------- model


class FlowMatchingModel(nn.Module):
    """The trained pair; ``forward`` is the flow-matching loss of a batch (one module, so DDP syncs both)."""

    def __init__(self, *, generator: Generator, video_encoder: VideoEncoder) -> None:
        super().__init__()
        self.generator = generator  # the DiT velocity network
        self.video_encoder = video_encoder  # frames -> tokens, trained jointly

    def conditions(self, batch: dict) -> Conditions:
        """Conditions of a collated batch (`trainer.feature_cache.CropCollate`): frames (B, F, S, S, 3) ->
        tokens (B, F, Dv); motion (B, T, Ds); four text blocks; T = latent frames of ``batch["z"]``."""
        tokens = self.video_encoder(batch["frames"], batch["frame_mask"])  # (B, F, Dv)
        return self.generator.prepare_conditions(
            tokens, batch["frame_mask"], batch["motion"], batch["text"], batch["z"].shape[2], batch.get("timeline")
        )

    def forward(self, batch: dict, noise: torch.Tensor, t: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        """Scalar loss for latents ``batch["z"]`` (B, C, T), noise (B, C, T), times t (B,); ``rng`` draws
        the condition dropout."""
        cond = self.generator.drop_conditions(self.conditions(batch), rng)
        return flow_matching_loss(lambda x, tt: self.generator.velocity(x, tt, cond), batch["z"], noise, t)


def build_model(cfg: PretrainConfig, data: dict) -> FlowMatchingModel:
    """Fresh models seeded by ``cfg.seed``; the generator's input widths follow the video encoder, the
    motion features and the codec of the cache config ``data`` (the default preset already matches)."""
    torch.manual_seed(cfg.seed)
    video_encoder = VideoEncoder(config=VIDEO_ENCODER_PRESETS[cfg.video_preset])
    vc, feats = video_encoder.config, data["features"]
    if (vc.rate, vc.size) != (feats["video_rate"], feats["video_size"]):
        raise UserInputError(
            f"video encoder wants {vc.rate} fps x {vc.size} px frames, the cache holds "
            f"{feats['video_rate']} fps x {feats['video_size']} px; rebuild the cache or pick another preset"
        )
    gen_cfg = replace(
        GENERATOR_PRESETS[cfg.preset],
        latent_dim=data["latent_dim"],
        video_dim=vc.width,
        sync_dim=data["sync_dim"],
        text_dim=data["text_dim"],
        cond_dropout=cfg.cond_dropout,
        timeline_dim=TIMELINE_DIM if cfg.timeline else 0,
    )
    return FlowMatchingModel(generator=Generator(config=gen_cfg), video_encoder=video_encoder)


def continue_from(model: FlowMatchingModel, folder: str | Path, data: dict, recue: bool = False) -> None:
    """Load the weights of the trained model folder ``folder`` (`save_pretrained`) into ``model``, so a run
    continues it on new clips with a schedule of its own. The folder must hold the same networks and have
    been trained on latents of the cache's codec and cues of the cache's planner (``recue``: cues of another
    planner are accepted, the sync width being part of the networks' config); `UserInputError` if not."""
    from trainer.feature_cache import file_sha256

    start = load_pretrained(folder)
    gen_cfg = model.generator.config
    adds_timeline = start.generator.config.timeline_dim == 0 < gen_cfg.timeline_dim  # the new path starts neutral
    start_cfg = replace(start.generator.config, timeline_dim=gen_cfg.timeline_dim) if adds_timeline else None
    if (start_cfg or start.generator.config) != gen_cfg or start.video_encoder.config != model.video_encoder.config:
        raise UserInputError(f"the model in {folder} has other networks than this run's preset; pick its preset")
    if file_sha256(start.codec_path) != data["codec"]["sha256"]:
        raise UserInputError(f"the model in {folder} uses another codec than the cache was built with")
    cues = (start.manifest.get("planner_source") or {}).get("sha256")
    if cues != (data.get("planner") or {}).get("sha256") and not recue:
        raise UserInputError(
            f"the model in {folder} was trained on other sync cues than the cache holds (--recue: re-learn them)"
        )
    missing, _ = model.generator.load_state_dict(start.generator.state_dict(), strict=not adds_timeline)
    if any(not k.startswith(("timeline_", "null_timeline")) for k in missing):
        raise UserInputError(f"the generator in {folder} lacks weights this run needs: {missing}")
    model.video_encoder.load_state_dict(start.video_encoder.state_dict())


# -------------------------------------------------------------------------------------- data order


class BatchOrder(torch.utils.data.Sampler):
    """Batches of clip positions for global batch numbers ``start .. stop - 1``: a pure function of the seed.

    Epoch e: a seeded permutation of all clips, cut into groups of ``batch * bucket`` clips, each group sorted
    by length and cut into batches (so a batch holds similar lengths; a ragged group tail waits for the next
    epoch's permutation), then the batches of the epoch are shuffled.
    """

    def __init__(self, *, lengths: np.ndarray, batch: int, bucket: int, seed: int, start: int, stop: int) -> None:
        if len(lengths) < batch:
            raise UserInputError(f"the cache has {len(lengths)} clips, fewer than one batch of {batch}")
        self.lengths = np.asarray(lengths)  # (N,) latent frames per clip
        self.batch, self.bucket, self.seed = batch, bucket, seed
        self.start, self.stop = start, stop  # global batch numbers [start, stop)
        self.per_epoch = len(self.epoch_batches(0))  # the same for every epoch (depends only on N)
        self._cache: tuple[int, list[list[int]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of one epoch, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        perm, size, out = rng.permutation(len(self.lengths)), self.batch * self.bucket, []
        for lo in range(0, len(perm), size):
            group = perm[lo : lo + size]
            group = group[np.argsort(self.lengths[group], kind="stable")]
            out += [group[i : i + self.batch].tolist() for i in range(0, len(group) - self.batch + 1, self.batch)]
        return [out[i] for i in rng.permutation(len(out))]

    def batch_at(self, g: int) -> list[int]:
        """Global batch number ``g``."""
        epoch = g // self.per_epoch
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self.epoch_batches(epoch))
        return self._cache[1][g % self.per_epoch]

    def fingerprint(self) -> str:
        """Identifies the data order (seed, batch, bucket, clip lengths): a resumed run must match it."""
        h = hashlib.sha256(f"{self.seed}/{self.batch}/{self.bucket}/".encode() + self.lengths.tobytes())
        return h.hexdigest()[:16]

    def __iter__(self) -> Iterator[list[int]]:
        return (self.batch_at(g) for g in range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


# ------------------------------------------------------------------------------ schedule, EMA, state


def lr_factor(step: int, cfg: PretrainConfig) -> float:
    """Learning-rate multiplier of optimiser step ``step`` (0-based): linear warm-up, then cosine to
    ``min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay after ``step`` steps: ``min(decay, (1 + step) / (10 + step))`` (timm/diffusers warm-up, so a
    short run's EMA is not mostly the random initialisation)."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for every parameter."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach().to(e.dtype), 1.0 - decay)


class RunState:
    """The step, the data-order fingerprint and the loop's record, checkpointed with the models (accelerate
    custom object)."""

    def __init__(self, *, step: int, fingerprint: str) -> None:
        self.step = step  # optimiser steps done
        self.fingerprint = fingerprint  # `BatchOrder.fingerprint` of the run's data
        self.record: dict = {}  # `trainer.loop.Record` as JSON (empty in a checkpoint of before the loop)

    def state_dict(self) -> dict:
        return {"step": self.step, "fingerprint": self.fingerprint, "record": json.dumps(self.record)}

    def load_state_dict(self, state: dict) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise UserInputError(
                "the checkpoint was trained on other data (cache, clips, batch or seed differ); "
                "use --no-resume or another --out"
            )
        self.step = int(state["step"])
        self.record = json.loads(state.get("record", "{}"))


def step_rng(seed: int, step: int, process: int) -> torch.Generator:
    """The CPU generator of one step's noise, times and dropout: a pure function of (seed, step, process)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + process)


# ------------------------------------------------------------------------------------------- setup


def _setup(cfg: PretrainConfig, resume: bool) -> dict:
    """Accelerator, data, models, EMA, AdamW, LR schedule and run state; resumed from the newest checkpoint."""
    from accelerate import Accelerator

    acc = Accelerator(mixed_precision=cfg.mixed_precision)
    built = load_index(cfg.cache)["config"]
    rate = built["sample_rate"] / built["hop"] if cfg.timeline else None  # items carry the Temporal block's track
    data = FeatureDataset(cfg.cache, cfg.cot_mode, cfg.clips, timeline_rate=rate)
    model = build_model(cfg, data.config)
    if cfg.init:
        continue_from(model, cfg.init, data.config, cfg.recue)
    if int(data.lengths().max()) > model.generator.config.max_frames:
        raise UserInputError(f"the cache holds clips longer than the preset's max_frames ({cfg.preset!r})")
    ema = copy.deepcopy(model).requires_grad_(False).eval()  # float32 average of the weights, what ships
    decay = [p for p in model.parameters() if p.ndim >= 2]  # no weight decay on biases, norms and null tokens
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    order = BatchOrder(lengths=data.lengths(), batch=cfg.batch, bucket=cfg.bucket, seed=cfg.seed, start=0, stop=0)
    run = RunState(step=0, fingerprint=order.fingerprint())  # restored (and checked) by load_state
    model, optimizer = acc.prepare(model, optimizer)
    ema.to(acc.device)
    acc.register_for_checkpointing(ema, scheduler, run)
    if not resume and acc.is_main_process:  # start over: no old checkpoint or log may mix in
        shutil.rmtree(cfg.checkpoints, ignore_errors=True)
        (Path(cfg.out) / "train_log.jsonl").unlink(missing_ok=True)
    latest = latest_checkpoint(cfg.checkpoints) if resume else None
    if latest is not None:
        acc.load_state(str(latest))
    return {
        "acc": acc,
        "data": data,
        "model": model,
        "ema": ema,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "run": run,
    }


def _loader(s: dict, cfg: PretrainConfig, start: int, stop: int):
    """The prepared DataLoader of steps [start, stop) (each process gets its own batch of every step)."""
    n_proc, feats = s["acc"].num_processes, s["data"].config
    order = BatchOrder(
        lengths=s["data"].lengths(),
        batch=cfg.batch,
        bucket=cfg.bucket,
        seed=cfg.seed,
        start=start * n_proc,
        stop=stop * n_proc,
    )
    collate = CropCollate(
        hop=feats["hop"], sample_rate=feats["sample_rate"], video_rate=feats["features"]["video_rate"]
    )
    loader = torch.utils.data.DataLoader(s["data"], batch_sampler=order, collate_fn=collate, num_workers=cfg.workers)
    return s["acc"].prepare(loader)


# -------------------------------------------------------------------------------------------- step


def train_step(s: dict, batch: dict, step: int, cfg: PretrainConfig) -> dict:
    """One optimiser step on a collated batch (z (B, C, T), frames, motion, text) and the EMA update."""
    acc, model, optimizer, scheduler = s["acc"], s["model"], s["optimizer"], s["scheduler"]
    rng = step_rng(cfg.seed, step, acc.process_index)
    z = batch["z"]  # (B, C, T) normalised latents: x0, the data end of the flow
    noise = torch.randn(z.shape, generator=rng).to(z.device)  # (B, C, T) x1, drawn on the CPU for every device
    t = logit_normal_times(z.shape[0], cfg.t_mean, cfg.t_std, generator=rng).to(z.device)  # (B,)
    model.train()
    loss = model(batch, noise, t, rng)
    acc.backward(loss)
    grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    update_ema(s["ema"], acc.unwrap_model(model), ema_decay_at(step, cfg.ema_decay))
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0]}


# ------------------------------------------------------------------------------------- checkpoints


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder ``root/step_<n>`` (temporary folders are ignored), or None."""
    done = sorted(root.glob("step_*"), key=lambda p: int(p.name.split("_")[1])) if root.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(s: dict, cfg: PretrainConfig, step: int) -> Path:
    """``accelerator.save_state`` into a temporary folder, renamed to ``step_<n>``; older ones pruned."""
    acc, root = s["acc"], cfg.checkpoints
    final, tmp = root / f"step_{step:07d}", root / f".step_{step:07d}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))[: -cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------------- final weights


def _codec_source(cfg: PretrainConfig, data: dict) -> Path:
    """The codec file of the run: ``cfg.codec`` (must be the file the cache was built with) or that file."""
    from trainer.feature_cache import file_sha256

    built = data["codec"]
    path = Path(cfg.codec or built["path"])
    if not path.is_file() or file_sha256(path) != built["sha256"]:
        raise UserInputError(f"codec {path} is missing or not the codec the cache {cfg.cache} was built with")
    return path


def _planner_source(data: dict) -> dict | None:
    """The planner file whose cues the cache holds (checked by content), or None."""
    from trainer.feature_cache import file_sha256

    built = data.get("planner")
    if built is None:
        return None
    path = Path(built["path"])
    if not path.is_file() or file_sha256(path) != built["sha256"]:
        raise UserInputError(f"planner {path} is missing or not the planner the cache was built with")
    return {"path": str(path), "sha256": built["sha256"]}


def manifest_for(cfg: PretrainConfig, data: dict, step: int, final_loss: float | None) -> dict:
    """The model.json of a finished run, in the layout of `engine.bundle` bundles (codec, generator and video
    encoder files side by side), plus where the codec came from and the text settings of the cache."""
    feats = data["features"]
    return {
        "format": FORMAT,
        "name": Path(cfg.out).name,
        "cot_mode": cfg.cot_mode,
        "files": FILES,
        "sample_rate": data["sample_rate"],
        "latent_rate": data["latent_rate"],
        "video_rate": feats["video_rate"],
        "video_size": feats["video_size"],
        "codec_source": {"path": str(_codec_source(cfg, data)), "sha256": data["codec"]["sha256"]},
        "planner_source": _planner_source(data),
        "sync_cues": data.get("planner") is not None,
        "text": {"encoder": data["text_encoder"], "block_tokens": feats["block_tokens"]}
        | {"mono_tokens": feats["mono_tokens"]},
        "extra": {"train": asdict(cfg), "steps_done": step, "final_loss": final_loss},
    }


def save_pretrained(model: FlowMatchingModel, out: str | Path, manifest: dict) -> Path:
    """Write ``out/``: the codec (a copy of ``manifest["codec_source"]``) and the planner of the sync cues
    (``manifest["planner_source"]``, if any), the generator and video encoder as float16 safetensors, and
    ``model.json`` last (a folder with a manifest is complete)."""
    out, files = Path(out), manifest["files"]
    out.mkdir(parents=True, exist_ok=True)
    copy_file(Path(manifest["codec_source"]["path"]), out / files["codec"])
    if manifest.get("planner_source"):
        copy_file(Path(manifest["planner_source"]["path"]), out / PLANNER_FILE)
    save_generator(copy.deepcopy(model.generator).half(), out / files["generator"])  # float16 halves the size
    save_video_encoder(model.video_encoder, out / files["video_encoder"], dtype=torch.float16)
    write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return out / MANIFEST


def export_checkpoint(cfg: PretrainConfig, out: str | Path) -> Path:
    """Write the EMA models of the newest checkpoint of ``cfg``'s run to the model folder ``out``
    (`save_pretrained`; the manifest's ``steps_done`` says where the run was), leaving the run as it is:
    the same step of runs that differ in one setting compares like with like. `UserInputError` when the
    run has no checkpoint."""
    if latest_checkpoint(cfg.checkpoints) is None:
        raise UserInputError(f"no checkpoint in {cfg.checkpoints} to export")
    s = _setup(cfg, resume=True)
    step = s["run"].step
    if s["acc"].is_main_process:
        save_pretrained(s["ema"], out, manifest_for(cfg, s["data"].config, step, None) | {"name": Path(out).name})
    s["acc"].wait_for_everyone()
    return Path(out) / MANIFEST


@dataclass
class Pretrained:
    """A trained model folder read back: float32 models in eval mode and the manifest."""

    generator: Generator  # the DiT (EMA weights)
    video_encoder: VideoEncoder  # frames -> tokens (EMA weights)
    codec_path: Path  # the codec file the generator's latents belong to
    manifest: dict  # model.json (cot_mode, files, rates, text settings, training config)


def load_pretrained(out: str | Path, device: str | torch.device = "cpu") -> Pretrained:
    """Read a folder written by `save_pretrained`; `UserInputError` when it is not one."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise UserInputError(f"no trained model at {out} (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a model manifest (format {manifest.get('format')!r})")
    files = manifest["files"]
    generator = load_generator(Path(out) / files["generator"], device).float()
    video_encoder = load_video_encoder(Path(out) / files["video_encoder"], device)
    return Pretrained(generator, video_encoder, Path(out) / files["codec"], manifest)


# -------------------------------------------------------------------------------------------- loop


class PretrainMethod(Accelerated):
    """Pretraining as the loop drives it: the prepared batches of steps [start, end) in order; no held-out
    data (the loop logs, checkpoints and decides the end)."""

    def __init__(self, s: dict, cfg: PretrainConfig, end: int) -> None:
        self.s, self.cfg, self.acc = s, cfg, s["acc"]
        self.batches = iter(_loader(s, cfg, s["run"].step, end))

    def step(self, step: int) -> dict:
        batch = next(self.batches)
        entry = train_step(self.s, batch, step, self.cfg) | {"clips": batch["index"].tolist()}
        self.s["run"].step = step + 1
        return entry

    def evaluate(self, step: int) -> None:
        return None

    def keep_best(self) -> None:
        """Nothing: no held-out evaluation."""

    def checkpoint(self, step: int, extra: dict) -> None:
        self.s["run"].record = extra
        save_checkpoint(self.s, self.cfg, step)

    def finish(self, step: int, record: Record, progress) -> dict:
        """The EMA models written to ``out/`` (main process; the others wait)."""
        if self.is_main:
            last = record.history[-1]["loss"] if record.history else None
            save_pretrained(self.s["ema"], self.cfg.out, manifest_for(self.cfg, self.s["data"].config, step, last))
        self.acc.wait_for_everyone()
        return {}


def pretrain(cfg: PretrainConfig, progress: Progress | None = None, resume: bool = True) -> dict:
    """Train (or resume) as ``cfg`` says; at ``cfg.steps`` write the EMA models to ``cfg.out`` (`save_pretrained`).

    ``progress(step, steps, entry)`` gets the averaged loss, grad norm, lr and seconds per step every
    ``log_every`` steps. With ``resume`` the newest checkpoint in ``out/checkpoints`` is continued; without,
    old checkpoints are deleted. Returns ``{"out", "finished", "step", "resumed_from", "seconds",
    "sec_per_step", "params", "history"}`` (history: the whole run's `trainer.loop` entries, with the clips
    each saw; ``train_log.jsonl`` holds them too).
    """
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        s, t0 = _setup(cfg, resume), time.perf_counter()
        every = dict(log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, stop_at=cfg.stop_at, eval_start=False)
        schedule = Schedule(steps=cfg.steps, **every)
        start, record = s["run"].step, Record.from_extra(s["run"].record)
        method = PretrainMethod(s, cfg, schedule.end)
        log = Path(cfg.out) / "train_log.jsonl"
        end = run_loop(method, schedule, record, start, log, parts_progress(progress, whole=True))
        seconds, ema = time.perf_counter() - t0, s["ema"]
        params = {"generator": ema.generator.num_parameters(), "video_encoder": ema.video_encoder.num_parameters()}
        result = {"out": str(cfg.out) if end.finished else None, "finished": end.finished, "step": end.step}
        result |= {"resumed_from": start, "seconds": seconds, "history": record.history}
        return result | {"sec_per_step": seconds / max(end.step - start, 1), "params": params}
    finally:
        torch.set_num_threads(old_threads)
