"""The training-data cache of the generator: everything about a FoleyWorld clip that does not change
while the generator trains, computed once (DESIGN "Compute budget facts": cache what does not change).

Per clip (T latent frames, F = ceil(duration * rate) encoder frames, Lk tokens of CoT block k):

- ``z`` (C, T) float16: normalised codec latents of the clip's stereo audio (`engine.codec.Codec.encode`);
- ``frames`` (F, S, S, 3) uint8: the rendered frames as the video encoder sees them (8 fps, 64 px, by
  `engine.video_encoder.frames_for_encoder`, i.e. exactly how `engine.video_io.load_video` reads files);
  the encoder is trained with the generator, so frames, not tokens, are cached;
- ``motion`` (T, Ds) float16: the generator's sync features (`engine.sync.sync_features`): the motion
  features of the rendered frames at their native frame rate, resampled to the codec's latent frame
  times, and, for a cache built with a planner file, that planner's cues, read from the frames after an
  H.264 round trip exactly as `engine.pipeline.prepare_video` reads a user's file (Ds = 50 + 5 C);
- ``text.<mode>.<k>`` (Lk, 384) float16: all-MiniLM-L6-v2 token states (padding removed) of CoT slot
  k = 0..3 for each stored mode of `COT_MODES` (see `cot_text_blocks`; "none" needs nothing stored).

On disk: ``config.json`` (what the cache was built with, including the codec file's SHA-256; a
rebuild with anything else is refused), ``shards/shard_<start>_<end>.npz`` (compressed; one member per
array, so one clip is read without decompressing the others; frames compress ~17x) and ``index.json``
(one entry per clip: shard, member key, duration, T, F), written last. Shards are written to a
temporary name and renamed, so an interrupted build resumes by skipping the shards that exist.
Cost per 9 s clip on one core of our CPU: ~0.18 s FoleyWorld audio, ~0.16 s MiniLM (five texts), ~0.08 s
codec + rendering + motion + resizing, ~0.03 s compression: ~0.45 s, so ~0.22 s a clip with the default
Pool(2) on 2 cores (plus ~8 s of worker start-up). ~0.25 MB on disk (~2.5 GB for 10k clips): the frames
compress to ~50 kB, the float16 text states (~230 kB raw for both modes) barely compress.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_path, write_text
from engine.codec import Codec, load_codec
from engine.cot import Cot
from engine.errors import UserInputError
from engine.generator import COT_MODES, TextBlock
from engine.planner.network import PlannerNet, load_planner_net
from engine.sync import sync_dim, sync_features
from engine.text_encoder import EMBED_DIM
from engine.timeline import timeline_track
from engine.video_encoder import frames_for_encoder
from trainer.foleyworld.scene import WorldConfig
from trainer.foleyworld.splits import Clip, clip_cot, make_clip
from trainer.foleyworld.video import frame_times, render_frames
from trainer.planner.train import decoded_like_a_file

STORED_MODES = ("decomposed", "monolithic")  # modes with text to cache ("none" is all-empty)
TEXT_ENCODER = "all-MiniLM-L6-v2"  # recorded in config.json: the token states depend on it
Progress = Callable[[int, int], None]  # (clips done, clips in total)


@dataclass(frozen=True)
class FeatureConfig:
    """Which FoleyWorld clips are cached, and how."""

    split: str = "train"  # FoleyWorld split the clips come from
    start: int = 0  # index of the first clip
    count: int = 2400  # number of clips (start .. start + count - 1); a cache can later be grown
    duration: float = 9.0  # clip length in seconds (the reference's 9 s window)
    random_duration: bool = False  # draw each clip's length in [2, 12] s from its seed instead
    fps: float = 24.0  # frame rate the clips are rendered at (motion features use all of these frames)
    width: int = 96  # rendered frame width, pixels
    height: int = 96  # rendered frame height, pixels
    video_rate: float = 8.0  # frames per second stored for the video encoder (its config.rate)
    video_size: int = 64  # side of the stored encoder frames (its config.size)
    block_tokens: int = 128  # token limit per CoT block (MAX_BLOCK_CHARS = 600 is ~128 tokens; none is cut
    #                          in FoleyWorld, where the longest temporal block has ~121 tokens)
    mono_tokens: int = 512  # token limit of the monolithic string (4 x 128: the same words, never cut)
    shard_size: int = 64  # clips per shard file
    workers: int = 2  # processes of the spawn pool (1 = in this process)

    def __post_init__(self) -> None:
        if self.count < 1 or self.shard_size < 1 or self.workers < 1 or self.start < 0:
            raise ValueError(f"need count, shard_size, workers >= 1 and start >= 0: {self}")
        if self.block_tokens < 3 or self.mono_tokens < self.block_tokens:
            raise ValueError(f"need 3 <= block_tokens <= mono_tokens, got {self.block_tokens=} {self.mono_tokens=}")

    @property
    def world(self) -> WorldConfig:
        """The FoleyWorld config of every clip (before a random duration is drawn)."""
        return WorldConfig(duration=self.duration, fps=self.fps, width=self.width, height=self.height)

    def shard_ranges(self) -> list[tuple[int, int]]:
        """Clip index ranges [a, b) of the shards of this build, cut at multiples of ``shard_size`` (so a
        grown cache reuses every full shard of the smaller one)."""
        end, s = self.start + self.count, self.shard_size
        cuts = [self.start, *range((self.start // s + 1) * s, end, s), end]
        return list(zip(cuts[:-1], cuts[1:]))

    def identity(self) -> dict:
        """The fields a cache is bound to (not the clip range, shard size or worker count)."""
        d = asdict(self)
        for k in ("start", "count", "shard_size", "workers"):
            del d[k]
        return d


# ---------------------------------------------------------------------------------------------- text


def encode_sorted(texts: list[str], max_tokens: int, chunk: int = 16) -> list[np.ndarray]:
    """Token states (Li, 384) float16 of each text (padding removed; empty text -> (0, 384)). Texts are
    encoded in chunks of similar length, so little is spent on padding (3x faster than one padded batch)."""
    from engine.text_encoder import encode_tokens

    out = [np.zeros((0, EMBED_DIM), np.float16) for _ in texts]
    todo = sorted((i for i, s in enumerate(texts) if s.strip()), key=lambda i: len(texts[i]))
    for lo in range(0, len(todo), chunk):
        ids = todo[lo : lo + chunk]
        states, mask = encode_tokens([texts[i] for i in ids], max_tokens=max_tokens)  # (b, L, 384), (b, L)
        for b, i in enumerate(ids):
            out[i] = states[b][mask[b]].numpy().astype(np.float16)
    return out


def _text_arrays(cots: Sequence[Cot], cfg: FeatureConfig) -> list[dict[str, np.ndarray]]:
    """Per clip {"text.<mode>.<k>": (Lk, 384) float16} for the stored modes: the token states
    `cot_text_blocks` gives for the clip's CoT (without its padding)."""
    blocks = encode_sorted([b for c in cots for b in c.blocks()], cfg.block_tokens)  # 4 per clip, CoT order
    mono = encode_sorted([c.monolithic() for c in cots], cfg.mono_tokens)
    empty = np.zeros((0, EMBED_DIM), np.float16)
    out = []
    for j in range(len(cots)):
        d = {f"text.decomposed.{k}": blocks[4 * j + k] for k in range(4)}
        out.append(d | {"text.monolithic.0": mono[j]} | {f"text.monolithic.{k}": empty for k in (1, 2, 3)})
    return out


# ----------------------------------------------------------------------------------------- one clip


def clip_features(
    clip: Clip, codec: Codec, cfg: FeatureConfig, planner: PlannerNet | None = None
) -> dict[str, np.ndarray]:
    """z (C, T) float16, frames (F, S, S, 3) uint8 and motion (T, Ds) float16 (the sync features, with
    ``planner``'s cues when given) of one clip."""
    world = clip.scene.config
    audio = torch.from_numpy(np.ascontiguousarray(clip.audio.audio.T))[None]  # (1, 2, N)
    with torch.no_grad():
        z = codec.encode(audio)[0]  # (C, T)
    rendered = render_frames(clip.scene)  # (F_native, H, W, 3) at world.fps
    times = frame_times(world)  # (F_native,) seconds
    seen = None
    if planner is not None:  # (F_p, S, S, 3) at the planner's rate, as a decoded file gives them
        seen = decoded_like_a_file(rendered, world.fps, planner.config.rate, planner.config.size)
    latent_rate = codec.config.latent_rate
    motion = sync_features(rendered, times, world.duration, latent_rate, z.shape[1], planner, seen)  # (T, Ds)
    frames = frames_for_encoder(rendered, times, world.duration, cfg.video_rate, cfg.video_size)  # (F, S, S, 3)
    return {"z": z.numpy().astype(np.float16), "frames": frames, "motion": motion.astype(np.float16)}


# -------------------------------------------------------------------------------------- shards, pool

_WORKER: dict = {}  # per process: the loaded codec and planner (set by `_init_worker`)


def _init_worker(codec_path: str, planner_path: str | None = None) -> None:
    """Pool initialiser: one thread per process (2 processes on 2 cores), codec and planner loaded once."""
    torch.set_num_threads(1)
    _load_models(codec_path, planner_path)


def _load_models(codec_path: str, planner_path: str | None) -> None:
    _WORKER["codec"] = load_codec(codec_path)
    _WORKER["planner"] = load_planner_net(planner_path) if planner_path else None


def shard_name(a: int, b: int) -> str:
    """File name of the shard holding clips [a, b)."""
    return f"shard_{a:07d}_{b:07d}.npz"


def _build_shard(job: tuple[str, dict, int, int]) -> dict:
    """Compute and write the shard of clips [a, b) (in a pool worker); returns its index entries."""
    cache, cfg_dict, a, b = job
    cfg = FeatureConfig(**cfg_dict)
    clips = [make_clip(cfg.split, i, cfg.world, cfg.random_duration) for i in range(a, b)]
    arrays, entries = {}, []
    texts = _text_arrays([c.cot for c in clips], cfg)
    for j, (clip, text) in enumerate(zip(clips, texts)):
        feats = {**clip_features(clip, _WORKER["codec"], cfg, _WORKER["planner"]), **text}
        arrays |= {f"c{j}.{k}": v for k, v in feats.items()}
        entries.append(_entry(clip, j, feats, shard_name(a, b)))
    arrays["meta"] = np.frombuffer(json.dumps(entries).encode(), dtype=np.uint8)
    path = Path(cache) / "shards" / shard_name(a, b)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return {"shard": path.name, "clips": entries}


def _entry(clip: Clip, j: int, feats: dict[str, np.ndarray], shard: str) -> dict:
    """The index entry of clip ``j`` of a shard."""
    tokens = {m: [int(len(feats[f"text.{m}.{k}"])) for k in range(4)] for m in STORED_MODES}
    return {
        "name": f"{clip.split}_{clip.index:06d}",
        "index": clip.index,
        "shard": shard,
        "key": f"c{j}",
        "duration": clip.scene.config.duration,
        "T": int(feats["z"].shape[1]),
        "F": int(feats["frames"].shape[0]),
        "tokens": tokens,
    }


def _shard_entries(path: Path) -> list[dict]:
    """The index entries stored inside a written shard."""
    with np.load(path) as npz:
        return json.loads(npz["meta"].tobytes().decode())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run_jobs(jobs: list[tuple], codec_path: str, workers: int, planner_path: str | None = None):
    """Yield each job's result: in this process for one worker or one job, else from a spawn pool."""
    if workers == 1 or len(jobs) <= 1:
        _load_models(codec_path, planner_path)
        yield from map(_build_shard, jobs)
        return
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
    pool = ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(codec_path, planner_path))
    try:
        yield from pool.imap_unordered(_build_shard, jobs)
        pool.close()  # all done: let the workers exit on their own
    finally:
        pool.terminate()
        pool.join()


# -------------------------------------------------------------------------------------- the cache

FORMAT = "foley-features/1"  # "format" of config.json and index.json


def _cache_config(cfg: FeatureConfig, codec_path: Path, planner_path: Path | None = None) -> dict:
    """What the cache is bound to: feature settings, the codec and planner files (by content) and the encoders."""
    codec = load_codec(codec_path).config
    planner = load_planner_net(planner_path) if planner_path else None
    return {
        "format": FORMAT,
        "features": cfg.identity(),
        "codec": {"path": str(codec_path), "sha256": file_sha256(codec_path), "config": asdict(codec)},
        "planner": {"path": str(planner_path), "sha256": file_sha256(planner_path)} if planner_path else None,
        "latent_rate": codec.latent_rate,
        "hop": codec.hop,
        "sample_rate": codec.sample_rate,
        "latent_dim": codec.latent_dim,
        "sync_dim": sync_dim(planner),
        "text_encoder": TEXT_ENCODER,
        "text_dim": EMBED_DIM,
    }


def _bind_config(cache: Path, want: dict) -> dict:
    """Write ``config.json``, or check that an existing one matches ``want`` (the codec path may move)."""
    path = cache / "config.json"
    want = json.loads(json.dumps(want))  # as it reads back from the file (tuples become lists)
    if not path.is_file():
        _write_json(path, want)
        return want
    have = json.loads(path.read_text())
    no_path = lambda part: {k: v for k, v in part.items() if k != "path"} if part else part
    strip = lambda d: {**d, "codec": no_path(d["codec"]), "planner": no_path(d.get("planner"))}
    if strip(have) != strip(want):
        diff = sorted(k for k in want if strip(have).get(k) != strip(want)[k])
        raise UserInputError(f"feature cache {cache} was built with other {', '.join(diff)}; use a new folder")
    return have


def _write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=1))


def build_features(
    cache_dir: str | Path,
    codec_path: str | Path,
    cfg: FeatureConfig | None = None,
    progress: Progress | None = None,
    planner_path: str | Path | None = None,
) -> dict:
    """Compute the cache for clips ``cfg.start .. cfg.start + cfg.count - 1`` of ``cfg.split`` with the codec
    file ``codec_path`` (and the planner file ``planner_path``, whose cues join the sync features);
    resumable (existing shards are kept). Returns the index:
    ``{"format", "config" (see `_cache_config`), "clips": [entry per clip, in clip order]}``.
    """
    cfg = cfg or FeatureConfig()
    cache, codec_path = Path(cache_dir), Path(codec_path)
    planner_path = Path(planner_path) if planner_path else None
    (cache / "shards").mkdir(parents=True, exist_ok=True)
    config = _bind_config(cache, _cache_config(cfg, codec_path, planner_path))
    ranges = cfg.shard_ranges()
    todo = [r for r in ranges if not (cache / "shards" / shard_name(*r)).is_file()]
    done = sum(b - a for a, b in ranges) - sum(b - a for a, b in todo)
    jobs = [(str(cache), asdict(cfg), a, b) for a, b in todo]
    for result in _run_jobs(jobs, str(codec_path), cfg.workers, str(planner_path) if planner_path else None):
        done += len(result["clips"])
        if progress:
            progress(done, cfg.count)
    entries = [e for r in ranges for e in _shard_entries(cache / "shards" / shard_name(*r))]
    index = {"format": FORMAT, "config": config, "clips": entries}
    _write_json(cache / "index.json", index)
    return index


def load_index(cache_dir: str | Path) -> dict:
    """The index of a built cache; `UserInputError` when the folder holds none."""
    path = Path(cache_dir) / "index.json"
    if not path.is_file():
        raise UserInputError(f"no feature cache at {cache_dir} (no index.json); build one with `train features`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a feature cache index (format {index.get('format')!r})")
    return index


# ------------------------------------------------------------------------------------------ reading


class FeatureDataset(torch.utils.data.Dataset):
    """The first ``clips`` clips of a cache (all when None) with the text of one CoT mode.

    Item i: ``{"index": clip index, "z": (C, T) float16, "frames": (F, S, S, 3) uint8, "motion": (T, Ds)
    float16, "text": 4 arrays (Lk, 384) float16}``. Shards are opened lazily per process (DataLoader
    workers each open their own) and one member is decompressed per array read.
    """

    def __init__(
        self, cache_dir: str | Path, cot_mode: str, clips: int | None = None, timeline_rate: float | None = None
    ) -> None:
        if cot_mode not in COT_MODES:
            raise UserInputError(f"unknown cot mode {cot_mode!r}; choose one of {', '.join(COT_MODES)}")
        index = load_index(cache_dir)
        if clips is not None and len(index["clips"]) < clips:
            raise UserInputError(f"feature cache {cache_dir} has {len(index['clips'])} clips, fewer than {clips}")
        self.root = Path(cache_dir)
        self.cot_mode = cot_mode
        self.config = index["config"]  # what the cache was built with (see `_cache_config`)
        self.entries = index["clips"][:clips]  # one dict per clip (see `_entry`)
        self._open: dict[str, np.lib.npyio.NpzFile] = {}
        if timeline_rate is not None and cot_mode != "decomposed":
            raise UserInputError(f"only a decomposed CoT has a Temporal block to read a timeline from: {cot_mode!r}")
        self.timeline_rate = timeline_rate  # latent frames per second: items carry the Temporal block's track

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> np.ndarray:
        """T (latent frames) of every clip, (N,) int."""
        return np.array([e["T"] for e in self.entries], dtype=np.int64)

    def __getstate__(self) -> dict:  # open zip handles do not pickle (DataLoader workers, spawn)
        return {**self.__dict__, "_open": {}}

    def _npz(self, shard: str) -> np.lib.npyio.NpzFile:
        if shard not in self._open:
            self._open[shard] = np.load(self.root / "shards" / shard)
        return self._open[shard]

    def __getitem__(self, i: int) -> dict:
        e = self.entries[i]
        npz, k = self._npz(e["shard"]), e["key"]
        if self.cot_mode == "none":
            text = [np.zeros((0, EMBED_DIM), np.float16)] * 4
        else:
            text = [npz[f"{k}.text.{self.cot_mode}.{j}"] for j in range(4)]
        item = {
            "index": e["index"],
            "z": npz[f"{k}.z"],
            "frames": npz[f"{k}.frames"],
            "motion": npz[f"{k}.motion"],
            "text": text,
        }
        if self.timeline_rate is not None:
            item["timeline"] = timeline_track(self.cot(i).temporal, e["T"], self.timeline_rate)
        return item

    def cot(self, i: int) -> Cot:
        """The ground-truth CoT of item i, rewritten from its scene (the cache stores only its token states)."""
        f = self.config["features"]
        world = WorldConfig(duration=f["duration"], fps=f["fps"], width=f["width"], height=f["height"])
        return clip_cot(f["split"], self.entries[i]["index"], world, f["random_duration"])


@dataclass(frozen=True)
class CropCollate:
    """Batches items of `FeatureDataset`, cropping every item to the batch's shortest clip (from the start).

    With one clip length (the default 9 s) nothing is cropped; with random durations the batch sampler
    groups similar lengths so only a few trailing frames are lost. The encoder frames are cut to
    F = ceil(T hop / sample_rate * video_rate), the frames a video of that duration has.
    """

    hop: int  # audio samples per latent frame
    sample_rate: int  # audio samples per second
    video_rate: float  # encoder frames per second

    def __call__(self, items: list[dict]) -> dict:
        """-> {"index" (B,), "z" (B, C, T), "motion" (B, T, Ds), "frames" (B, F, S, S, 3) uint8,
        "frame_mask" (B, F) bool, "text": 4 pairs (states (B, Lk, 384) float32, mask (B, Lk) bool), and
        "timeline" (B, T, K) when the items carry one}."""
        t = min(it["z"].shape[1] for it in items)
        f_t = int(np.ceil(t * self.hop / self.sample_rate * self.video_rate - 1e-6))
        f = min(f_t, *(it["frames"].shape[0] for it in items))
        stack = lambda key, sl: torch.from_numpy(np.stack([it[key][sl] for it in items]))
        frames = stack("frames", np.s_[:f])  # (B, F, S, S, 3) uint8
        return (
            {
                "index": torch.tensor([it["index"] for it in items]),
                "z": stack("z", np.s_[:, :t]).float(),  # (B, C, T)
                "motion": stack("motion", np.s_[:t]).float(),  # (B, T, Ds)
                "frames": frames,
                "frame_mask": torch.ones(frames.shape[:2], dtype=torch.bool),  # (B, F): every frame is real
                "text": [pad_text_block([it["text"][k] for it in items]) for k in range(4)],
            }
            | stack_timelines(items, t)
        )


def stack_timelines(items: list[dict], t: int) -> dict:
    """{"timeline": (B, T, K) float32} of items that carry one (cropped to T frames), else {}."""
    if "timeline" not in items[0]:
        return {}
    return {"timeline": torch.from_numpy(np.stack([it["timeline"][:t] for it in items])).float()}


def pad_text_block(rows: list[np.ndarray]) -> TextBlock:
    """B arrays (Lb, 384) -> states (B, L, 384) float32 zero-padded to the longest, mask (B, L)."""
    n = max(len(r) for r in rows)
    states = torch.zeros(len(rows), n, EMBED_DIM)
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    for b, r in enumerate(rows):
        states[b, : len(r)] = torch.from_numpy(r.astype(np.float32))
        mask[b, : len(r)] = True
    return states, mask
