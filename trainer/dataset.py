"""Reading an ingested dataset (`trainer.ingest`) for training: windows, their CoTs, the held-out part.

- `TrainDataset`: every window of a dataset with the token states of its source's CoT, read from the
  dataset's CoT files when the dataset is opened (so an edited CoT is what the next run trains on);
  items carry ``video`` False for text-audio pairs;
- `held_out_split`: the held-out part is a seeded choice of whole *sources*, so no window of a held-out
  clip is ever trained on (windows of one clip overlap in content);
- `WindowCollate`: batches windows of one length group (cropped to the shortest), with zero frames and
  motion for text-audio rows, which the trainer replaces by the generator's null video and sync;
- `dataset_prompts`: the video windows as RL prompts for `trainer.grpo.learn` (no file is decoded again).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.cot import Cot, load_cot
from engine.errors import UserInputError
from engine.generator import BLOCK_TOKENS, COT_MODES, MONO_TOKENS
from engine.text_encoder import EMBED_DIM
from engine.timeline import timeline_track
from trainer.feature_cache import encode_sorted, pad_text_block, stack_timelines
from trainer.ingest import FORMAT, MANIFEST, REPLAY_SOURCE, binding


def load_manifest(folder: str | os.PathLike) -> dict:
    """dataset.json of an ingested dataset; `UserInputError` when the folder holds none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserInputError(f"no dataset at {folder} (no {MANIFEST}); make one with: python launch.py train ingest")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a dataset manifest (format {manifest.get('format')!r})")
    return manifest


def check_binding(manifest: dict, bundle, folder) -> None:
    """`UserInputError` unless the dataset was built for a model with this bundle's codec and sync features."""
    if manifest["binding"] != binding(bundle):
        raise UserInputError(
            f"dataset {folder} was built for model {manifest['model']!r} (another codec or sync features); "
            f"ingest again for {bundle.name!r}"
        )


def cot_token_states(cots: list[Cot], mode: str) -> list[list[np.ndarray]]:
    """Per CoT the generator's four text slots as token states (Lk, 384) float16 without padding, exactly as
    `engine.generator.cot_text_blocks` encodes them (decomposed: one block per slot; monolithic: the
    joined text in slot 0; none: nothing)."""
    empty = np.zeros((0, EMBED_DIM), np.float16)
    if mode == "none":
        return [[empty] * 4 for _ in cots]
    if mode == "decomposed":
        flat = encode_sorted([b for c in cots for b in c.blocks()], BLOCK_TOKENS)
        return [flat[4 * j : 4 * j + 4] for j in range(len(cots))]
    mono = encode_sorted([c.monolithic() for c in cots], MONO_TOKENS)
    return [[m, empty, empty, empty] for m in mono]


class TrainDataset(torch.utils.data.Dataset):
    """The windows of a dataset with the text of one CoT mode.

    Item i: ``{"index": i, "z": (C, T) float16, "frames": (F, S, S, 3) uint8 or None, "motion": (T, Ds)
    float16 or None, "text": 4 arrays (Lk, 384) float16, "video": bool, "replay": bool}``, and with a
    ``timeline_rate`` (latent frames per second) "timeline" (T, K): the window's part of its source's
    Temporal-block track (`engine.timeline`).
    """

    def __init__(self, folder: str | os.PathLike, cot_mode: str, timeline_rate: float | None = None) -> None:
        if cot_mode not in COT_MODES:
            raise UserInputError(f"unknown cot mode {cot_mode!r}; choose one of {', '.join(COT_MODES)}")
        self.root = Path(folder)
        self.manifest = load_manifest(folder)
        self.sources = self.manifest["sources"]  # one dict per source, in ingest order
        self.cots = [load_cot(self.root / "cots" / f"{s['id']}.cot.json") for s in self.sources]
        self.entries = [  # one per window: (source position, window dict)
            (j, w) for j, s in enumerate(self.sources) for w in s["windows"]
        ]
        states = cot_token_states(self.cots, cot_mode)
        self._text = [states[j] for j, _ in self.entries]
        self.timeline_rate = timeline_rate

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> np.ndarray:
        """T (latent frames) of every window, (N,) int."""
        return np.array([w["T"] for _, w in self.entries], dtype=np.int64)

    def groups(self) -> list[str]:
        """The source id of every window (what the held-out split keeps together)."""
        return [self.sources[j]["id"] for j, _ in self.entries]

    def is_video(self, i: int) -> bool:
        return self.sources[self.entries[i][0]]["kind"] == "video"

    def is_replay(self, i: int) -> bool:
        """Whether window i comes from a replayed FoleyWorld clip (`trainer.ingest.replay_folder`)."""
        return self.sources[self.entries[i][0]].get("cot_source") == REPLAY_SOURCE

    def fingerprint(self) -> str:
        """Identifies the training data: every window and every source's CoT (an edited CoT changes it)."""
        h = hashlib.sha256(json.dumps(self.manifest["binding"], sort_keys=True).encode())
        for (j, w), cot in zip(self.entries, (self.cots[j] for j, _ in self.entries)):
            h.update(json.dumps([self.sources[j]["id"], w, cot.to_dict()], sort_keys=True).encode())
        return h.hexdigest()[:16]

    def __getitem__(self, i: int) -> dict:
        j, w = self.entries[i]
        with np.load(self.root / "windows" / f"{w['key']}.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        item = {
            "index": i,
            "z": arrays["z"],
            "frames": arrays.get("frames"),
            "motion": arrays.get("motion"),
            "text": self._text[i],
            "video": self.sources[j]["kind"] == "video",
            "replay": self.is_replay(i),
        }
        if self.timeline_rate is not None:
            start = round(w["start"] * self.timeline_rate)  # the window's first frame in its source
            n = int(arrays["z"].shape[1])
            item["timeline"] = timeline_track(self.cots[j].temporal, n, self.timeline_rate, start)
        return item


def held_out_split(groups: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training positions, held-out positions) of items whose group (source) ids are ``groups``: a seeded
    ``fraction`` of the sources, at least one when ``fraction`` > 0 and there are two or more, never all."""
    if not 0.0 <= fraction < 1.0:
        raise UserInputError(f"the held-out fraction must be in [0, 1), got {fraction}")
    names = sorted(set(groups))
    n_held = min(max(1, round(fraction * len(names))), len(names) - 1) if fraction > 0 and len(names) > 1 else 0
    held = {names[k] for k in np.random.default_rng([seed, 0x4E1D]).permutation(len(names))[:n_held]}
    train = [i for i, g in enumerate(groups) if g not in held]
    return train, [i for i, g in enumerate(groups) if g in held]


@dataclass(frozen=True)
class WindowCollate:
    """Batches `TrainDataset` items, cropped to the batch's shortest window (from the start)."""

    hop: int  # audio samples per latent frame
    sample_rate: int  # audio samples per second
    video_rate: float  # encoder frames per second
    video_size: int  # side of the encoder frames
    sync_dim: int  # Ds, width of the sync features

    def __call__(self, items: list[dict]) -> dict:
        """-> {"index" (B,), "z" (B, C, T), "motion" (B, T, Ds), "frames" (B, F, S, S, 3) uint8,
        "frame_mask" (B, F) bool, "has_video" (B,) bool, "replay" (B,) bool, "text": 4 pairs (states (B, Lk,
        384), mask)}, and "timeline" (B, T, K) when the items carry one."""
        t = min(it["z"].shape[1] for it in items)
        f = max(1, int(np.ceil(t * self.hop / self.sample_rate * self.video_rate - 1e-6)))
        f = min([f, *(it["frames"].shape[0] for it in items if it["frames"] is not None)])
        s = self.video_size
        frames = np.zeros((len(items), f, s, s, 3), np.uint8)
        motion = np.zeros((len(items), t, self.sync_dim), np.float32)
        for b, it in enumerate(items):
            if it["video"]:
                frames[b] = it["frames"][:f]
                motion[b] = it["motion"][:t]
        return {
            "index": torch.tensor([it["index"] for it in items]),
            "z": torch.from_numpy(np.stack([it["z"][:, :t] for it in items])).float(),  # (B, C, T)
            "motion": torch.from_numpy(motion),  # (B, T, Ds)
            "frames": torch.from_numpy(frames),  # (B, F, S, S, 3)
            "frame_mask": torch.ones((len(items), f), dtype=torch.bool),
            "has_video": torch.tensor([bool(it["video"]) for it in items]),
            "replay": torch.tensor([bool(it.get("replay", False)) for it in items]),
            "text": [pad_text_block([it["text"][k] for it in items]) for k in range(4)],
        } | stack_timelines(items, t)


def timeline_rate(bundle) -> float | None:
    """Latent frames per second for a bundle whose generator reads the Temporal block's timeline, else None
    (what `TrainDataset`'s ``timeline_rate`` wants)."""
    return bundle.latent_rate if bundle.generator.config.timeline_dim else None


def collate_for(dataset: TrainDataset) -> WindowCollate:
    b = dataset.manifest["binding"]
    return WindowCollate(b["hop"], b["sample_rate"], b["video_rate"], b["video_size"], b["sync_dim"])


# ------------------------------------------------------------------------------------------- prompts


def dataset_prompts(folder: str | os.PathLike, bundle, held_out: float, seed: int, limit: int | None = None):
    """(training prompts, held-out prompts) of `trainer.grpo.learn` from the dataset's video windows (text-audio
    pairs have no picture for the temporal and spatial rewards, so RL leaves them out). The held-out part
    is `held_out_split` of the sources; when it is empty, the training prompts are evaluated."""
    data = TrainDataset(folder, bundle.cot_mode)
    check_binding(data.manifest, bundle, folder)
    videos = [i for i in range(len(data)) if data.is_video(i)]
    if not videos:
        raise UserInputError(f"dataset {folder} holds no video windows; RL needs videos (text-audio pairs have none)")
    train, held = held_out_split([data.groups()[i] for i in videos], held_out, seed)
    make = lambda ks: [_prompt(data, videos[k], bundle) for k in ks[:limit]]  # noqa: E731
    train_prompts = make(train)
    return train_prompts, (make(held) if held else train_prompts)


@torch.no_grad()
def _prompt(data: TrainDataset, i: int, bundle):
    """One video window as a `trainer.grpo.prompts.Prompt`, built from its cached arrays."""
    from engine.motion import SYNC_DIM
    from engine.prepared import PreparedVideo
    from engine.rewards import VideoView
    from engine.video_io import VideoInfo
    from trainer.grpo.prompts import Prompt

    item, (j, w) = data[i], data.entries[i]
    cfg, enc = bundle.codec.config, bundle.video_encoder.config
    n_latent, frames = int(item["z"].shape[1]), item["frames"]
    duration = n_latent * cfg.hop / cfg.sample_rate
    info = VideoInfo(data.sources[j]["file"], duration, enc.rate, enc.size, enc.size, 0, len(frames), 0, 0)
    sync = item["motion"].astype(np.float32)  # (T, Ds)
    tokens = bundle.video_encoder(torch.from_numpy(np.ascontiguousarray(frames))[None].to(bundle.device))
    sync_t = torch.from_numpy(sync.copy())[None].to(bundle.device)  # (1, T, Ds)
    frames.flags.writeable = sync.flags.writeable = False  # a PreparedVideo is read-only
    prepared = PreparedVideo(info, duration, cfg.sample_rate, n_latent * cfg.hop, frames, enc.rate, sync, cfg.hop)
    cot = data.cots[j]
    text = bundle.encode_cot(cot)
    view = VideoView(duration, cfg.latent_rate, np.ascontiguousarray(sync[:, :SYNC_DIM]))
    name = f"{data.sources[j]['id']}@{w['start']:g}s"
    timeline = bundle.timeline(cot, round(w["start"] * cfg.latent_rate), n_latent)
    return Prompt(name, cot, prepared, view, tokens, sync_t, text.text, text.negative, timeline)
