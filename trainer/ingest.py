"""Ingest: a studio's own footage and sound library become a training dataset for one model.

Two kinds of source (ThinkSound and ReasonAudio train on both):

- **videos with their own audio**: each is decoded exactly as a render decodes it
  (`engine.pipeline.prepare_video`: encoder frames and sync features at the codec's latent rate), its audio
  track is resampled to the codec's rate, made stereo and cut or padded to the picture's length, and
  encoded by the model's codec. A lossless file of the same stem beside the video (``<stem>.wav``, .flac,
  .aif) is taken instead of the track when there is one: a container's 128 kb/s AAC track keeps the band
  above 16 kHz about 8 dB down and carries coding noise, which the codec's log-magnitude latents see
  plainly (on FoleyWorld clips the latents of the AAC track have over twice the spread of the original's,
  and the start model's flow-matching loss on them is 11 times its loss on the originals), and a
  fine-tune would learn that colour into every render. Its CoT is ``<stem>.cot.json`` beside the file
  when there is one, else the planner's, else the generic fallback (with a warning);
- **audio files with tags**: text-audio pairs with no video. The tags come from a CSV (columns ``file``
  and ``tags``) or from the file name (``metal_door-slam_03.wav`` -> "metal door slam") and become the
  Semantic block; the other blocks stay empty. In training the video branch of these items is the
  generator's null video and sync, as in classifier-free-guidance dropout.

A clip longer than the window is cut into windows of exactly ``window`` seconds (the last one aligned to
the clip's end, so it overlaps its neighbour instead of being short); a clip shorter than ``min_seconds``
is skipped. A file that cannot be used (unreadable, no audio, no video where one is needed, silent,
too short) is reported with the reason and skipped; ingest never stops on one.

On disk (`trainer.dataset` reads it)::

    dataset.json            format, the model it was built for, sources, windows, skipped files (written last)
    windows/<key>.npz       z (C, T) float16 latents; video windows also frames (F, S, S, 3) uint8, motion (T, Ds)
    cots/<source>.cot.json  the CoT of each source: edit it, and the next training run uses the edit

Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_path, write_text
from engine.bundle import ModelBundle
from engine.cot import Cot, load_cot, validate_cot
from engine.errors import UserInputError
from engine.pipeline import prepare_video
from engine.prepared import PreparedVideo, frame_span

FORMAT = "foley-dataset/1"  # "format" of dataset.json
MANIFEST = "dataset.json"
REPLAY_SOURCE = "foleyworld"  # cot_source of the replayed FoleyWorld clips (`replay_folder`)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".opus")
LOSSLESS_SUFFIXES = (".wav", ".flac", ".aif", ".aiff")  # a video's sound beside it, preferred to its track
SILENCE_RMS = 1e-5  # a window quieter than this (about -100 dBFS) carries nothing to learn
Planner = Callable[[Path], Cot]  # video -> CoT (engine.planner.default.load_planner(model).plan)
Progress = Callable[[int, int, str], None]  # (files done, files in all, current file name)


class IngestError(UserInputError):
    """A file that cannot become training data; the message is the reason shown in the report."""


@dataclass(frozen=True)
class IngestConfig:
    """How sources are cut into training windows."""

    window: float = 10.0  # seconds per training window (the render pipeline's window); capped at max_frames
    min_seconds: float = 0.5  # sources shorter than this are skipped

    def __post_init__(self) -> None:
        if not self.window > 0 or not 0 < self.min_seconds <= self.window:
            raise UserInputError(f"need window > 0 and 0 < min_seconds <= window, got {self}")


@dataclass
class Source:
    """One file to ingest."""

    id: str  # unique within the dataset; names the CoT file (letters, digits, ``_`` and ``-``)
    path: Path  # the file
    kind: str  # "video" (with its own audio) or "audio" (tags, no video)
    cot: Cot | None = None  # the CoT when known (a side file, tags, the studio); None: the planner writes it
    cot_source: str = ""  # where the CoT came from: file, planner, fallback, name, csv, studio, foleyworld


@dataclass
class IngestReport:
    """What an ingest did."""

    folder: Path  # the dataset folder
    sources: list[dict] = field(default_factory=list)  # one entry per ingested source
    windows: int = 0  # training windows written
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"} per file left out

    def summary(self) -> dict:
        kinds = [s["kind"] for s in self.sources]
        return {
            "dataset": str(self.folder),
            "videos": kinds.count("video"),
            "sounds": kinds.count("audio"),
            "windows": self.windows,
            "seconds": round(sum(s["duration"] for s in self.sources), 3),
            "skipped": self.skipped,
        }


# ------------------------------------------------------------------------------------------ sources


def safe_id(text: str, taken: set[str]) -> str:
    """A file-name-safe id made from ``text``, unique among ``taken`` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:48] or "item"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def tags_from_name(path: Path) -> str:
    """Tags from a file name: separators become spaces, trailing take numbers go
    (``metal_door-slam_03.wav`` -> "metal door slam")."""
    words = re.split(r"[\s_\-.,]+", path.stem)
    while words and re.fullmatch(r"\d+|take\d*|v\d+", words[-1].lower() or "0"):
        words.pop()
    return " ".join(w for w in words if w)


def read_tags_csv(path: Path) -> dict[str, str]:
    """{file name: tags} from a CSV with a header naming the columns ``file`` and ``tags``."""
    if not path.is_file():
        raise UserInputError(f"tags file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"{path.name} is not a readable CSV ({exc.__class__.__name__})") from None
    if not rows or not {"file", "tags"} <= {(k or "").strip().lower() for k in rows[0]}:
        raise UserInputError(f"{path.name} needs a header with the columns 'file' and 'tags'")
    out = {}
    for row in rows:
        low = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if low["file"] and low["tags"]:
            out[Path(low["file"]).name] = " ".join(low["tags"].replace(";", ",").split())
    return out


def video_folder(folder: str | os.PathLike, taken: set[str] | None = None) -> list[Source]:
    """The videos of a folder (sorted by name), each with ``<stem>.cot.json`` beside it when there is one."""
    root, taken = Path(folder), set() if taken is None else taken
    if not root.is_dir():
        raise UserInputError(f"video folder not found: {root}")
    out = []
    for p in sorted(q for q in root.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES):
        side = p.with_name(f"{p.stem}.cot.json")
        cot = _side_cot(side)
        out.append(Source(safe_id(f"v_{p.stem}", taken), p, "video", cot, "file" if cot else ""))
    return out


def replay_folder(
    folder: str | os.PathLike, count: int, taken: set[str] | None = None, world=None, progress=None
) -> list[Source]:
    """``count`` FoleyWorld ``train`` clips (the world the shipped default learned) written into ``folder``
    as videos with their ground-truth CoT beside them, as sources. Mixed into a studio's data they replay
    what the start model knows, so a fine-tune on a few new classes does not forget the old ones.
    ``world``: the `trainer.foleyworld.scene.WorldConfig` of the clips (default: FoleyWorld's)."""
    from trainer.foleyworld.splits import write_split

    root, taken = Path(folder), set() if taken is None else taken
    out = []
    for m in write_split("train", root, count, world, progress=progress):
        cot = Cot(**m["cot"])
        _write_cot(root / f"{m['name']}.cot.json", cot)
        sid = safe_id(f"replay_{m['name']}", taken)
        out.append(Source(sid, root / f"{m['name']}.mp4", "video", cot, REPLAY_SOURCE))
    return out


def _side_cot(path: Path) -> Cot | None:
    """The CoT file beside a video, or None when there is none (a broken one is an error: the user wrote it)."""
    return load_cot(path) if path.is_file() else None


def sound_folder(
    folder: str | os.PathLike, tags_csv: str | os.PathLike | None = None, taken: set[str] | None = None
) -> list[Source]:
    """The audio files of a folder (sorted by name) with their tags as the Semantic block: from the CSV
    when it lists the file, else from the file name."""
    root, taken = Path(folder), set() if taken is None else taken
    if not root.is_dir():
        raise UserInputError(f"sound folder not found: {root}")
    listed = read_tags_csv(Path(tags_csv)) if tags_csv else {}
    out = []
    videos = {q.stem for q in root.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES}
    for p in sorted(q for q in root.iterdir() if q.suffix.lower() in AUDIO_SUFFIXES):
        if p.stem in videos and p.suffix.lower() in LOSSLESS_SUFFIXES:
            continue  # a video's own sound (`lossless_sidecar`), not a tagged library sound
        tags, where = (listed[p.name], "csv") if p.name in listed else (tags_from_name(p), "name")
        cot = Cot(semantic=tags, temporal="", aesthetic="", spatial="") if tags else None
        out.append(Source(safe_id(f"a_{p.stem}", taken), p, "audio", cot, where if tags else "none"))
    return out


# ------------------------------------------------------------------------------------------- audio


def read_audio_file(path: Path, sample_rate: int) -> np.ndarray:
    """(N, 2) float32 audio of a sound file at ``sample_rate``: mono doubled, more than two channels mixed
    down to both sides; libsndfile formats directly, the rest (m4a, aac, opus) through FFmpeg."""
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio, sr = _read_with_ffmpeg(path), sample_rate
    if audio.shape[0] == 0:
        raise IngestError("holds no samples")
    return _stereo_at(audio, int(sr), sample_rate)


def _read_with_ffmpeg(path: Path) -> np.ndarray:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise IngestError("has no audio stream")
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
            frames = container.decode(container.streams.audio[0])
            chunks = [o.to_ndarray() for fr in frames for o in resampler.resample(fr)]
            chunks += [o.to_ndarray() for o in resampler.resample(None)]
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise IngestError(f"is not a readable sound file ({exc.__class__.__name__})") from None
    if not chunks:
        raise IngestError("holds no samples")
    return np.concatenate(chunks, axis=1).T.astype(np.float32)


def _stereo_at(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    """(N, C) at ``sr`` -> (M, 2) float32 at ``target`` (polyphase resampling)."""
    from scipy.signal import resample_poly

    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    elif audio.shape[1] > 2:
        audio = np.repeat(audio.mean(axis=1, keepdims=True), 2, axis=1)
    if sr != target:
        ratio = Fraction(target, sr).limit_denominator(1000)
        audio = resample_poly(audio.astype(np.float64), ratio.numerator, ratio.denominator, axis=0)
    return np.ascontiguousarray(audio, dtype=np.float32)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """(M, 2) -> (n, 2): cut, or padded with silence (a sound track a little shorter than its picture)."""
    out = np.zeros((n, 2), np.float32)
    m = min(n, len(audio))
    out[:m] = audio[:m]
    return out


# ------------------------------------------------------------------------------------------ windows


def window_starts(n_frames: int, length: int) -> list[int]:
    """Start frames of the windows of ``length`` latent frames covering ``n_frames``: one window when the
    clip fits, else every ``length`` frames with the last window ending exactly at the clip's end."""
    if n_frames < 1 or length < 1:
        raise ValueError(f"need n_frames >= 1 and length >= 1, got {n_frames=} {length=}")
    if n_frames <= length:
        return [0]
    starts = list(range(0, n_frames - length + 1, length))
    if starts[-1] + length < n_frames:
        starts.append(n_frames - length)
    return starts


def window_frames(bundle: ModelBundle, cfg: IngestConfig) -> int:
    """Latent frames per window: ``cfg.window`` seconds, at most the generator's ``max_frames``."""
    return max(1, min(round(cfg.window * bundle.latent_rate), bundle.max_frames))


@torch.no_grad()
def encode_window(bundle: ModelBundle, audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """z (C, length) float16: the codec latents of latent frames [start, start + length) of (N, 2) audio."""
    hop = bundle.codec.config.hop
    piece = fit_length(audio[start * hop : (start + length) * hop], length * hop)  # (length hop, 2)
    x = torch.from_numpy(np.ascontiguousarray(piece.T))[None].to(bundle.device)  # (1, 2, n)
    return bundle.encode_audio(x)[0].cpu().numpy().astype(np.float16)  # (C, length)


def video_windows(bundle: ModelBundle, prepared: PreparedVideo, audio: np.ndarray | None, length: int) -> list[dict]:
    """Arrays of each window of a prepared video: motion (T, Ds) float16, frames (F, S, S, 3) uint8 and,
    with ``audio`` (N, 2) at the codec's rate covering the picture, z (C, T) float16."""
    lr = bundle.latent_rate
    out = []
    for s in window_starts(prepared.n_latent, length):
        t = min(length, prepared.n_latent - s)
        i0, i1 = frame_span(s, t, lr, prepared.frame_rate, len(prepared.frames))
        item = {"motion": prepared.sync[s : s + t].astype(np.float16), "frames": np.asarray(prepared.frames[i0:i1])}
        if audio is not None:
            item["z"] = encode_window(bundle, audio, s, t)
        out.append(item | {"start": s / lr})
    return out


def lossless_sidecar(video: Path) -> Path | None:
    """``<stem>.wav`` (or .flac, .aif, .aiff) beside a video: its sound without the container's lossy codec."""
    for suffix in LOSSLESS_SUFFIXES:
        for p in (video.with_suffix(suffix), video.with_suffix(suffix.upper())):
            if p.is_file():
                return p
    return None


def _check_loud(audio: np.ndarray) -> None:
    if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENCE_RMS:
        raise IngestError("is silent")


def _video_items(src: Source, bundle: ModelBundle, cfg: IngestConfig) -> tuple[list[dict], float, dict]:
    from engine.video_io import load_audio_track

    prepared = prepare_video(src.path, bundle)
    if prepared.duration < cfg.min_seconds:
        raise IngestError(f"lasts {prepared.duration:.2f} s, shorter than {cfg.min_seconds:g} s")
    side = lossless_sidecar(src.path)
    track = read_audio_file(side, bundle.sample_rate) if side else load_audio_track(src.path, bundle.sample_rate)
    if track is None or len(track) == 0:
        raise IngestError("has no audio track (a video needs its own sound to train on)")
    audio = fit_length(track, prepared.n_samples)
    _check_loud(audio)
    windows = video_windows(bundle, prepared, audio, window_frames(bundle, cfg))
    return windows, prepared.duration, {"audio": str(side) if side else "track"}  # where its sound came from


def _audio_items(src: Source, bundle: ModelBundle, cfg: IngestConfig) -> tuple[list[dict], float, dict]:
    audio = read_audio_file(src.path, bundle.sample_rate)
    duration = len(audio) / bundle.sample_rate
    if duration < cfg.min_seconds:
        raise IngestError(f"lasts {duration:.2f} s, shorter than {cfg.min_seconds:g} s")
    _check_loud(audio)
    hop, lr = bundle.codec.config.hop, bundle.latent_rate
    n_latent, length = -(-len(audio) // hop), window_frames(bundle, cfg)
    starts = window_starts(n_latent, length)
    items = [{"z": encode_window(bundle, audio, s, min(length, n_latent - s)), "start": s / lr} for s in starts]
    return items, duration, {}


# --------------------------------------------------------------------------------------- the writer


def write_cot_file(folder: Path, source_id: str, cot: Cot) -> Path:
    """``folder/cots/<id>.cot.json`` (atomically): the CoT training reads for that source."""
    path = Path(folder) / "cots" / f"{source_id}.cot.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_cot(path, cot)


def _write_cot(path: Path, cot: Cot) -> Path:
    text = json.dumps(cot.to_dict() | {"negative": cot.negative}, indent=2) + "\n"
    write_text(path, text)
    return path


def _write_window(folder: Path, key: str, item: dict) -> dict:
    arrays = {k: item[k] for k in ("z", "frames", "motion") if k in item}

    with atomic_path(folder / "windows" / f"{key}.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    frames = int(arrays["frames"].shape[0]) if "frames" in arrays else 0
    return {"key": key, "start": round(float(item["start"]), 6), "T": int(item["z"].shape[1]), "F": frames}


def binding(bundle: ModelBundle) -> dict:
    """What the dataset's arrays depend on: the codec (by its weights), the sync features and the video frames."""
    from engine.sync import sync_dim

    codec, enc = bundle.codec.config, bundle.video_encoder.config
    digest = state_digest(bundle.codec)
    planner = state_digest(bundle.cue_planner) if bundle.cue_planner is not None else None
    return {
        "codec": digest,
        "cue_planner": planner,
        "sample_rate": codec.sample_rate,
        "hop": codec.hop,
        "latent_dim": codec.latent_dim,
        "sync_dim": sync_dim(bundle.cue_planner),
        "video_rate": enc.rate,
        "video_size": enc.size,
    }


def state_digest(module: torch.nn.Module) -> str:
    """A short hash of a module's weights (what a cache made with it depends on)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cot_of(src: Source, planner: Planner | None) -> tuple[Cot, str]:
    if src.cot is not None:
        return validate_cot(src.cot.to_dict()), src.cot_source or "given"
    if src.kind == "audio":
        raise IngestError("has no tags (name it after its sound or list it in the tags CSV)")
    if planner is not None:
        return planner(src.path), "planner"
    from engine.pipeline import FALLBACK_COT

    return FALLBACK_COT, "fallback"


def _one_source(folder: Path, src: Source, bundle: ModelBundle, cfg: IngestConfig, planner, report) -> None:
    """Windows, CoT file and report entry of one source; `UserInputError` when it cannot be used."""
    items, duration, origin = (_video_items if src.kind == "video" else _audio_items)(src, bundle, cfg)
    cot, where = _cot_of(src, planner)  # before anything is written: a failed plan leaves no files
    windows = [_write_window(folder, f"{src.id}_{k:04d}", it) for k, it in enumerate(items)]
    write_cot_file(folder, src.id, cot)
    entry = {"id": src.id, "kind": src.kind, "file": str(src.path), "duration": round(duration, 6)} | origin
    report.sources.append(entry | {"cot_source": where, "windows": windows})
    report.windows += len(windows)


def ingest(
    folder: str | os.PathLike,
    bundle: ModelBundle,
    sources: Sequence[Source],
    cfg: IngestConfig | None = None,
    planner: Planner | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Write the dataset of ``sources`` for ``bundle`` into ``folder`` (new, or without a dataset.json).

    Bad files are skipped and listed in the report (and in dataset.json); `UserInputError` only when the
    folder already holds a dataset or when no source could be used.
    """
    cfg, root = cfg or IngestConfig(), Path(folder)
    if (root / MANIFEST).exists():
        raise UserInputError(f"{root} already holds a dataset; choose a new folder")
    if len({s.id for s in sources}) != len(sources):
        raise ValueError("source ids must be unique")
    (root / "windows").mkdir(parents=True, exist_ok=True)
    report = IngestReport(root)
    for k, src in enumerate(sources):
        if progress:
            progress(k, len(sources), src.path.name)
        try:
            _one_source(root, src, bundle, cfg, planner, report)
        except UserInputError as exc:  # reported and skipped, never fatal
            reason = str(exc).replace(str(src.path), src.path.name).removeprefix(f"{src.path.name} ").strip()
            report.skipped.append({"file": src.path.name, "reason": reason})
    if progress:
        progress(len(sources), len(sources), "")
    if not report.sources:
        raise UserInputError(f"none of the {len(sources)} file(s) could be used: " + _reasons(report.skipped))
    _write_manifest(root, bundle, cfg, report)
    return report


def _reasons(skipped: list[dict]) -> str:
    return "; ".join(f"{s['file']} {s['reason']}" for s in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")


def _write_manifest(root: Path, bundle: ModelBundle, cfg: IngestConfig, report: IngestReport) -> None:
    manifest = {
        "format": FORMAT,
        "model": bundle.name,
        "binding": binding(bundle),
        "config": asdict(cfg),
        "sources": report.sources,
        "skipped": report.skipped,
    }
    text = json.dumps(manifest, indent=1)
    write_text(root / MANIFEST, text)
