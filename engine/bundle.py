"""The model bundle: the codec, generator and video encoder that render together, saved as one folder.

A bundle folder holds ``codec.safetensors``, ``generator.safetensors``, ``video_encoder.safetensors``,
optionally ``planner.safetensors`` (the default planner: it writes CoTs, and with ``"sync_cues": true``
in the manifest its frame-wise outputs are part of the generator's sync features, `engine.sync`),
optionally ``cues.safetensors`` (the planner the generator's cues were trained with, once the CoT planner
has been retrained: the cues stay those the generator knows) and a ``model.json`` manifest (written last,
so a folder with a manifest is complete). Shipped and trained bundles live under ``assets/models/<name>/``;
`load_bundle` takes such a name or a folder path.

Loaded bundles are cached per process (one load per folder and manifest version) and shared by every
request, so they are put in eval mode with gradients off and must never be mutated: a trainer that
fine-tunes a bundle works on ``copy.deepcopy`` of its parts.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import write_text
from engine.codec import Codec, load_codec, save_codec
from engine.cot import Cot
from engine.errors import UserInputError
from engine.family import TRAINING_METHODS, CotConditions, Finish, Guidance
from engine.generator import (
    COT_MODES,
    Conditions,
    Generator,
    concat_conditions,
    cot_text_blocks,
    encode_negative,
    generator_guidance,
    load_generator,
    save_generator,
)
from engine.planner.network import PlannerNet, load_planner_net, save_planner
from engine.prepared import PreparedVideo, decode_prepared, frame_span
from engine.sampling import Velocity
from engine.sync import event_gate, sync_dim
from engine.timeline import timeline_track
from engine.video_encoder import VideoEncoder, load_video_encoder, save_video_encoder

MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"  # home of named bundles
MANIFEST = "model.json"  # the manifest file of a bundle folder
FILES = {  # part -> file name inside a bundle folder
    "codec": "codec.safetensors",
    "generator": "generator.safetensors",
    "video_encoder": "video_encoder.safetensors",
}
FORMAT = "foley-model/1"  # "format" field of the manifest
DEFAULT_MODEL = "default"  # the name `render` uses when no model is given
PLANNER_FILE = "planner.safetensors"  # the optional planner of a bundle folder (writes CoTs; its cues, engine.sync)
CUES_FILE = "cues.safetensors"  # the planner the generator's sync cues come from, where it is not PLANNER_FILE


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """Everything a render needs besides the text encoder (a packaged pretrained model, shared by all)."""

    codec: Codec  # stereo audio <-> normalised latents at ``codec.config.latent_rate`` frames/s
    generator: Generator  # DiT predicting the flow velocity of the codec latents
    video_encoder: VideoEncoder  # frames at ``video_encoder.config.rate`` fps -> tokens (B, F, Dv)
    cot_mode: str = "decomposed"  # how the CoT reaches the generator: one of COT_MODES
    name: str = DEFAULT_MODEL  # shown in outputs and logs
    planner: PlannerNet | None = None  # the bundle's planner network, if it ships one
    sync_cues: bool = False  # the generator's sync features include the planner's cues (engine.sync)
    cue_net: PlannerNet | None = None  # the planner of the cues, where it is not ``planner`` (CUES_FILE)

    def __post_init__(self) -> None:
        if self.cot_mode not in COT_MODES:
            raise ValueError(f"cot_mode must be one of {COT_MODES}, got {self.cot_mode!r}")
        mismatch = check_compatible(self.codec, self.generator, self.video_encoder, self.cue_planner)
        if mismatch:
            raise ValueError(f"model parts do not fit together: {mismatch}")

    @property
    def sample_rate(self) -> int:
        """Audio samples per second per channel of the rendered audio."""
        return self.codec.config.sample_rate

    @property
    def cue_planner(self) -> PlannerNet | None:
        """The planner whose cues the sync features hold, or None (motion only)."""
        cues = self.cue_net if self.cue_net is not None else self.planner
        if self.sync_cues and cues is None:
            raise ValueError("sync_cues needs the bundle's planner")
        return cues if self.sync_cues else None

    @property
    def device(self) -> torch.device:
        """Where the generator's weights live (the other parts are expected on the same device)."""
        return next(self.generator.parameters()).device

    # ------------------------------------------------------------- the model family interface (engine.family)

    @property
    def trainable(self) -> frozenset[str]:
        """Every training method: the bundle's parts are this project's own networks."""
        return frozenset(TRAINING_METHODS)

    @property
    def latent_rate(self) -> float:
        """Latent frames per second of the codec."""
        return self.codec.config.latent_rate

    @property
    def max_frames(self) -> int:
        """The most latent frames the generator takes in one window."""
        return self.generator.config.max_frames

    def prepare(self, path: str | os.PathLike) -> PreparedVideo:
        """Decode ``path`` once at this bundle's encoder rate and size, with its sync features (cached)."""
        enc, codec = self.video_encoder.config, self.codec.config
        return decode_prepared(
            path, rate=enc.rate, size=enc.size, sample_rate=codec.sample_rate, hop=codec.hop, planner=self.cue_planner
        )

    def check_prepared(self, prepared: PreparedVideo) -> None:
        """`ValueError` unless ``prepared`` was prepared for this bundle's rates and frame size."""
        enc, codec = self.video_encoder.config, self.codec.config
        theirs = (prepared.sample_rate, prepared.hop, prepared.frame_rate, prepared.frames.shape[1])
        if theirs != (codec.sample_rate, codec.hop, enc.rate, enc.size):
            raise ValueError(
                f"video prepared for (sample_rate, hop, frame rate, size) = {theirs}, model {self.name!r} needs "
                f"{(codec.sample_rate, codec.hop, enc.rate, enc.size)}; prepare it with this model"
            )

    def encode_cot(self, cot: Cot) -> CotConditions:
        """The generator's four text slots for the CoT (B = 1) and its negative prompt (None when empty), on
        the bundle's device, exactly as the training cache builds them (`engine.generator.cot_text_blocks`)."""
        dev = self.device
        blocks = [(s.to(dev), m.to(dev)) for s, m in cot_text_blocks([cot], self.cot_mode)]
        if not cot.negative:
            return CotConditions(cot, blocks, None)
        s, m = encode_negative([cot])
        return CotConditions(cot, blocks, (s.to(dev), m.to(dev)))

    def video_tokens(self, prepared: PreparedVideo, start: int, length: int) -> torch.Tensor:
        """Video tokens (1, F_w, Dv) of the encoder frames shown during latent frames [start, start + length)."""
        lr = prepared.sample_rate / prepared.hop  # latent frames per second
        i0, i1 = frame_span(start, length, lr, prepared.frame_rate, len(prepared.frames))
        frames = torch.tensor(prepared.frames[i0:i1], device=self.device)[None]  # (1, F_w, S, S, 3) uint8
        return self.video_encoder(frames)

    def timeline(self, cot: Cot, start: int, length: int) -> torch.Tensor | None:
        """The Temporal block's time track (1, length, K) of latent frames [start, start + length) of the video
        (`engine.timeline`; times count from the video's start); None for a generator that takes no timeline."""
        if not self.generator.config.timeline_dim:
            return None
        track = timeline_track(cot.temporal, length, self.latent_rate, start)  # (length, K)
        return torch.from_numpy(track)[None].to(self.device)

    def window_conditions(
        self, prepared: PreparedVideo, text: CotConditions, start: int, length: int
    ) -> tuple[Conditions, Conditions]:
        """(cond, uncond) of latent frames [start, start + length): the window's video tokens, sync features,
        text and timeline; the unconditional side is the null video and sync plus the negative prompt."""
        self.check_prepared(prepared)
        sync = torch.tensor(prepared.sync[start : start + length], device=self.device)[None]  # (1, T, Ds)
        tokens = self.video_tokens(prepared, start, length)
        timeline = self.timeline(text.cot, start, length)
        cond = self.generator.prepare_conditions(tokens, None, sync, text.text, length, timeline)
        return cond, self.generator.null_like(cond, text.negative)

    def guided_velocity(self, cond: Conditions, uncond: Conditions, guidance: Guidance, batch: int = 1) -> Velocity:
        """`engine.generator.generator_guidance` with the weights frozen (the context projected once), for
        ``batch`` rows of noise under the same condition."""
        if batch > 1:
            cond, uncond = concat_conditions([cond] * batch), concat_conditions([uncond] * batch)
        g = guidance
        return generator_guidance(self.generator, cond, uncond, g.cfg, g.interval, g.video_cfg, g.rescale, frozen=True)

    def noise(self, seed: int, length: int) -> torch.Tensor:
        """Start noise (1, C, length) of ``seed`` from the CPU generator, on the bundle's device."""
        shape = (1, self.generator.config.latent_dim, length)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo audio (B, 2, N) at ``sample_rate`` -> normalised latents (B, C, T) of the codec."""
        return self.codec.encode(audio)

    def decode_latent(self, z: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Latents (B, C, T) -> stereo audio (B, 2, n_samples) through the codec."""
        return self.codec.decode(z, n_samples)

    def decode_window(
        self, z: torch.Tensor, prepared: PreparedVideo, start: int, length: int, finish: Finish
    ) -> np.ndarray:
        """Sampled latents (B, C, length) of frames [start, start + length) -> (B, n, 2) float32, n the
        window's samples (cropped at the end of the video), after `finish_latent`."""
        z = finish_latent(self.codec, z, prepared.sync[start : start + length], finish.declick, finish.gate)
        n = min(length * prepared.hop, prepared.n_samples - start * prepared.hop)
        return self.decode_latent(z, n).transpose(1, 2).float().cpu().numpy()  # (B, 2, n) -> (B, n, 2)


def finish_latent(codec: Codec, z: torch.Tensor, sync, declick: bool, gate: bool) -> torch.Tensor:
    """What a sampled latent (B, C, T) goes through before decoding, in renders and RL rollouts alike:
    `Codec.declick`, then `Codec.gate_transients` where `engine.sync.event_gate` reads no event in the
    sync features (T, Ds) of its frames (nothing for a model without planner cues)."""
    if declick:
        z = codec.declick(z)
    closed = event_gate(sync) if gate else None  # None: no cues in the sync features
    if closed is not None:
        z = codec.gate_transients(z, closed.to(z.device)[None].expand(z.shape[0], -1))
    return z


def check_compatible(
    codec: Codec, generator: Generator, video_encoder: VideoEncoder, cue_planner: PlannerNet | None = None
) -> str:
    """'' when the widths agree, else a description of every mismatch (latent, video, sync widths);
    ``cue_planner`` is the planner whose cues are part of the sync features, if any."""
    g = generator.config
    problems = []
    if g.latent_dim != codec.config.latent_dim:
        problems.append(f"generator latent_dim {g.latent_dim} != codec latent_dim {codec.config.latent_dim}")
    if g.video_dim != video_encoder.config.width:
        problems.append(f"generator video_dim {g.video_dim} != video encoder width {video_encoder.config.width}")
    if g.sync_dim != sync_dim(cue_planner):
        what = "motion features + planner cues" if cue_planner is not None else "motion features"
        problems.append(f"generator sync_dim {g.sync_dim} != {what} {sync_dim(cue_planner)}")
    return "; ".join(problems)


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The bundle folder for a name under `MODELS_DIR` or a folder path; `UserInputError` when missing."""
    text = str(name_or_path)
    is_path = isinstance(name_or_path, os.PathLike) or any(c in text for c in "/\\~") or text.startswith(".")
    candidates = [Path(text).expanduser()] if is_path else [MODELS_DIR / text, Path(text)]
    for folder in candidates:
        if (folder / MANIFEST).is_file():
            return folder.resolve()
    if is_path:
        raise UserInputError(f"{text} is not a model folder (no {MANIFEST}); pass a folder written by save_bundle")
    raise UserInputError(f"no model {text!r} under assets/models; train one with: python launch.py train pretrain ...")


def load_bundle(name_or_path: str | os.PathLike = DEFAULT_MODEL) -> ModelBundle:
    """Load (once per process and manifest version) the bundle named ``name_or_path`` or stored there.

    The result is shared: do not train or modify it in place.
    """
    folder = resolve_model(name_or_path)
    return _load_cached(str(folder), (folder / MANIFEST).stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: str, manifest_mtime_ns: int) -> ModelBundle:
    """`load_bundle` behind the cache; the manifest's mtime is part of the key so a re-saved bundle reloads."""
    root = Path(folder)
    manifest = _read_manifest(root / MANIFEST)
    missing = [f for f in FILES.values() if not (root / f).is_file()]
    if missing:
        raise UserInputError(f"model folder {root} is incomplete: missing {', '.join(missing)}")
    codec = load_codec(root / FILES["codec"])
    generator = load_generator(root / FILES["generator"])
    encoder = load_video_encoder(root / FILES["video_encoder"])
    planner = load_planner_net(root / PLANNER_FILE) if (root / PLANNER_FILE).is_file() else None
    cue_net = load_planner_net(root / CUES_FILE) if (root / CUES_FILE).is_file() else None
    cues = bool(manifest.get("sync_cues", False))
    if cues and planner is None and cue_net is None:
        raise UserInputError(f"model folder {root} is incomplete: its generator needs {PLANNER_FILE}")
    for part in (codec, generator, encoder, planner, cue_net):
        if part is not None:
            part.eval().requires_grad_(False)
    cue_planner = cue_net if cue_net is not None else planner
    mismatch = check_compatible(codec, generator, encoder, cue_planner if cues else None)
    if mismatch:
        raise UserInputError(f"model folder {root} holds parts that do not fit together: {mismatch}")
    cot_mode = manifest.get("cot_mode", "decomposed")
    if cot_mode not in COT_MODES:
        raise UserInputError(f"{root / MANIFEST}: cot_mode must be one of {', '.join(COT_MODES)}, got {cot_mode!r}")
    name = str(manifest.get("name") or root.name)
    return ModelBundle(codec, generator, encoder, cot_mode, name, planner, cues, cue_net)


def _read_manifest(path: Path) -> dict:
    """The manifest as a dict; `UserInputError` when it is not a bundle manifest."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path} is not a readable model manifest ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a model manifest (expected format {FORMAT!r})")
    return manifest


def save_bundle(bundle: ModelBundle, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the three weight files and the manifest (last, atomically) into ``folder``; returns it.

    ``extra`` (JSON-able: training steps, losses, data) is stored in the manifest.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    save_codec(bundle.codec, root / FILES["codec"])
    save_generator(bundle.generator, root / FILES["generator"])
    save_video_encoder(bundle.video_encoder, root / FILES["video_encoder"])
    if bundle.planner is not None:
        save_planner(bundle.planner, root / PLANNER_FILE)
    if bundle.cue_net is not None:
        save_planner(bundle.cue_net, root / CUES_FILE)
    manifest = {
        "format": FORMAT,
        "name": bundle.name,
        "cot_mode": bundle.cot_mode,
        "files": FILES,
        "sample_rate": bundle.sample_rate,
        "latent_rate": bundle.codec.config.latent_rate,
        "video_rate": bundle.video_encoder.config.rate,
        "video_size": bundle.video_encoder.config.size,
        "sync_cues": bundle.sync_cues,
        "extra": extra or {},
    }
    write_text(root / MANIFEST, json.dumps(manifest, indent=2))
    return root
