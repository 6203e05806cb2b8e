"""FoleyBench over a written FoleyWorld split: per-clip metrics, rows, aggregation and the table.

A *row* is a way of producing audio for each clip: ``ground_truth`` (the clip's own audio),
``shuffled`` (the ground-truth audio of the next clip in the split, judged against this clip),
``noise`` (Gaussian noise at the clip's RMS) and, for later models, any function
``(meta, gt_audio, sr) -> audio``. Aggregates: onset F1 and left/right accuracy are micro-averaged
(counts summed over the split); the rest are means over clips. The Frechet distance compares a row's
embedding set with the ground-truth set of the same clips (so the ground-truth row is 0 by
definition, and any permutation of the ground truth is 0 too: it is blind to pairing); the KL
divergence is paired per clip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from engine.bench.distribution import frechet_distance, kl_divergence
from engine.bench.mel import log_mel
from engine.bench.metric_nets import MetricModels, load_metric_models
from engine.bench.onsets import desync_offset, detect_onsets, onset_f1
from engine.bench.signal import clipping_rate, loudness_lufs
from engine.bench.spatial import spatial_scores

AudioFn = Callable[[dict, np.ndarray, int], np.ndarray]


@torch.no_grad()
def learned_scores(
    models: MetricModels, audio: np.ndarray, sr: int, text_emb: torch.Tensor, classes: list[str]
) -> dict:
    """Classifier, contrastive and quality outputs for one clip.

    ``text_emb`` is the MiniLM embedding (384,) of the Semantic block; ``classes`` the true classes.
    """
    mel = torch.from_numpy(log_mel(audio, sr))[None]  # (1, N_MELS, T)
    emb, logits = models.classifier(mel)
    probs = torch.sigmoid(logits)[0].numpy()
    k = max(1, len(classes))
    top = {models.classes[i] for i in np.argsort(-probs)[:k]}
    clap = float(models.contrastive.audio_embed(mel)[0] @ models.contrastive.text_embed(text_emb[None])[0])
    quality = float(torch.sigmoid(models.quality(mel)[1])[0, 0])
    return {
        "class_acc": len(top & set(classes)) / k,
        "clap": clap,
        "quality": quality,
        "embedding": emb[0].numpy(),
        "probs": probs,
    }


def clip_scores(audio: np.ndarray, sr: int, meta: dict, models: MetricModels, text_emb: torch.Tensor) -> dict:
    """Every FoleyBench metric of one (N, 2) clip against its ground truth ``meta``."""
    times = np.array([e["time"] for e in meta["events"]])
    det = detect_onsets(audio, sr)
    out = learned_scores(models, audio, sr, text_emb, meta["classes"])
    for tol in (0.05, 0.1):
        f = onset_f1(det, times, tol)
        out.update({f"tp{int(tol * 1000)}": f["tp"], f"fp{int(tol * 1000)}": f["fp"], f"fn{int(tol * 1000)}": f["fn"]})
    out["desync"] = abs(desync_offset(audio, sr, times, meta["duration"])) if len(times) else float("nan")
    sp = spatial_scores(audio, sr, meta["events"], meta["tracks"], meta["duration"])
    out.update(
        {
            "x_mse": sp["x_mse"],
            "lr_hits": sp["lr_accuracy"] * sp["n_probes"] if sp["n_probes"] else 0.0,
            "lr_probes": sp["n_probes"],
        }
    )
    out.update({"clipping": clipping_rate(audio), "loudness": loudness_lufs(audio, sr)})
    return out


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def aggregate(per_clip: list[dict], ref: list[dict]) -> dict:
    """Split-level metrics of one row; ``ref`` is the ground-truth row (for FD and KL)."""
    s = {
        k: float(np.nansum([c[k] for c in per_clip]))
        for k in ("tp50", "fp50", "fn50", "tp100", "fp100", "fn100", "lr_hits", "lr_probes")
    }
    mean = {
        k: float(np.nanmean([c[k] for c in per_clip]))
        for k in ("class_acc", "clap", "desync", "x_mse", "quality", "clipping")
    }
    loud = [c["loudness"] for c in per_clip if np.isfinite(c["loudness"])]
    return {
        **{k: mean[k] for k in ("class_acc", "clap")},
        "onset_f1_50": _f1(s["tp50"], s["fp50"], s["fn50"]),
        "onset_f1_100": _f1(s["tp100"], s["fp100"], s["fn100"]),
        "desync": mean["desync"],
        "x_mse": mean["x_mse"],
        "lr_acc": s["lr_hits"] / s["lr_probes"] if s["lr_probes"] else float("nan"),
        "quality": mean["quality"],
        "clipping": mean["clipping"],
        "loudness": float(np.mean(loud)) if loud else float("-inf"),
        "fd": frechet_distance(np.stack([c["embedding"] for c in per_clip]), np.stack([c["embedding"] for c in ref])),
        "kl": kl_divergence(np.stack([c["probs"] for c in ref]), np.stack([c["probs"] for c in per_clip])),
        "n_clips": len(per_clip),
    }


def shuffled_audio(metas: list[dict], audios: list[np.ndarray]) -> AudioFn:
    names = {m["name"]: i for i, m in enumerate(metas)}

    def fn(meta: dict, gt: np.ndarray, sr: int) -> np.ndarray:
        other = audios[(names[meta["name"]] + 1) % len(audios)]
        out = np.zeros_like(gt)
        m = min(len(gt), len(other))
        out[:m] = other[:m]
        return out

    return fn


def noise_audio(meta: dict, gt: np.ndarray, sr: int) -> np.ndarray:
    rng = np.random.default_rng(meta["seed"])
    return (rng.standard_normal(gt.shape) * np.sqrt(np.mean(gt**2))).astype(np.float32)


def codec_row(codec: torch.nn.Module) -> AudioFn:
    """Row ``codec``: the ground truth encoded and decoded by ``codec`` (what the codec alone loses)."""

    @torch.no_grad()
    def fn(meta: dict, gt: np.ndarray, sr: int) -> np.ndarray:
        if sr != codec.config.sample_rate:
            raise ValueError(f"codec runs at {codec.config.sample_rate} Hz, the split at {sr} Hz")
        x = torch.from_numpy(np.ascontiguousarray(gt.T))[None]  # (1, 2, N)
        return codec.decode(codec.encode(x), gt.shape[0])[0].T.numpy()

    return fn


def render_row(
    bundle, folder: Path, settings, planner=None, candidates: int = 1, weights: dict | None = None
) -> AudioFn:
    """Row of a model: each clip's video ``<folder>/<name>.mp4`` rendered by ``bundle`` with the clip's
    ground-truth CoT, or with the CoT ``planner.plan(video)`` writes from the silent video when a planner
    is given; seed ``settings.seed + clip index`` (one fixed seed per clip). With ``candidates`` N > 1 the
    row is best-of-N (`engine.best_of_n`, ranked by the reward heads with ``weights``): clip k renders
    seeds ``settings.seed + N k .. + N k + N - 1`` and keeps the best take."""
    from dataclasses import replace

    from engine.errors import UserInputError
    from engine.pipeline import prepare_video, render

    heads = None
    if candidates > 1:
        from engine.rewards import DEFAULT_WEIGHTS, load_reward_heads

        heads, weights = load_reward_heads(), weights or DEFAULT_WEIGHTS

    def fn(meta: dict, gt: np.ndarray, sr: int) -> np.ndarray:
        if sr != bundle.sample_rate:
            raise ValueError(f"model {bundle.name!r} renders at {bundle.sample_rate} Hz, the split is at {sr} Hz")
        video = Path(folder) / f"{meta['name']}.mp4"
        if not video.is_file():
            raise UserInputError(f"no video {video.name} in {folder}; write the split without --no-video")
        cot = planner.plan(video) if planner is not None else meta["cot"]
        prepared = prepare_video(video, bundle)
        if heads is None:
            audio = render(prepared, cot, bundle, replace(settings, seed=settings.seed + meta["index"]))
        else:
            from engine.best_of_n import best_of_n

            first = replace(settings, seed=settings.seed + candidates * meta["index"])
            audio = best_of_n(prepared, bundle, cot, first, candidates, weights, heads)[0].audio
        out = np.zeros_like(gt)  # the picture's length (to the sample) vs the clip's audio length: crop or pad
        n = min(len(out), len(audio))
        out[:n] = audio[:n]
        return out

    return fn


def load_clips(folder: Path, limit: int | None = None) -> tuple[list[dict], list[np.ndarray], int]:
    """Metadata and ground-truth audio of a written split (first ``limit`` clips)."""
    names = json.loads((folder / "index.json").read_text())["clips"][:limit]
    metas = [json.loads((folder / f"{n}.json").read_text()) for n in names]
    audios, rates = zip(*(sf.read(folder / f"{n}.wav", dtype="float32", always_2d=True) for n in names))
    return metas, list(audios), int(rates[0])


def bench_split(
    folder: Path,
    rows: list[str],
    limit: int | None = None,
    extra_rows: dict[str, AudioFn] | None = None,
    models: MetricModels | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """FoleyBench of ``rows`` on the split in ``folder``: {"split", "n_clips", "rows": {row: metrics}}."""
    from engine.text_encoder import encode_sentences

    models = models or load_metric_models()
    metas, audios, sr = load_clips(Path(folder), limit)
    fns: dict[str, AudioFn] = {
        "ground_truth": lambda m, a, r: a,
        "shuffled": shuffled_audio(metas, audios),
        "noise": noise_audio,
    }
    fns.update(extra_rows or {})
    unknown = [r for r in rows if r not in fns]
    if unknown:
        raise ValueError(f"unknown bench row(s) {', '.join(unknown)}; known: {', '.join(fns)}")
    text = encode_sentences([m["cot"]["semantic"] for m in metas])
    order = ["ground_truth"] + [r for r in rows if r != "ground_truth"]
    per_row: dict[str, list[dict]] = {}
    total, done = len(order) * len(metas), 0
    for row in order:
        per_row[row] = []
        for meta, gt, emb in zip(metas, audios, text):
            per_row[row].append(clip_scores(fns[row](meta, gt, sr), sr, meta, models, emb))
            done += 1
            if progress:
                progress(done, total)
    ref = per_row["ground_truth"]
    return {
        "split": metas[0]["split"] if metas else "",
        "n_clips": len(metas),
        "rows": {r: aggregate(per_row[r], ref) for r in order if r in rows},
    }


COLUMNS = [
    ("class_acc", "class acc", "{:.3f}"),
    ("clap", "CLAP~", "{:.3f}"),
    ("onset_f1_50", "onset F1 50ms", "{:.3f}"),
    ("onset_f1_100", "onset F1 100ms", "{:.3f}"),
    ("desync", "DeSync s", "{:.3f}"),
    ("x_mse", "x MSE", "{:.3f}"),
    ("lr_acc", "L/R acc", "{:.3f}"),
    ("quality", "quality", "{:.3f}"),
    ("clipping", "clip rate", "{:.4f}"),
    ("loudness", "LUFS", "{:.1f}"),
    ("fd", "FD", "{:.2f}"),
    ("kl", "KL", "{:.3f}"),
]


def markdown_table(result: dict) -> str:
    """The rows of a `bench_split` result as a markdown table."""
    head = "| row | " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|---|" + "---|" * len(COLUMNS)
    lines = [f"FoleyBench {result['split']} ({result['n_clips']} clips)", "", head, sep]
    for name, m in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(m[k]) for k, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ edited times


def follow_times(
    bundle,
    folder: Path,
    settings,
    shift: float,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Does a render follow times edited in the Temporal block, against the picture? Each clip renders twice
    with the same seed: with its ground-truth CoT and with every time of its Temporal block moved by
    ``shift`` seconds (`engine.timeline.shift_temporal`). Both takes' onsets are scored (micro-averaged F1
    at 50 and 100 ms) against the true events and against the events moved by ``shift`` (those inside the
    clip). -> {"split", "n_clips", "shift", "rows": {"written" | "moved": {"true_f1_50", "true_f1_100",
    "moved_f1_50", "moved_f1_100"}}}."""
    from dataclasses import replace

    from engine.pipeline import prepare_video, render
    from engine.timeline import shift_temporal

    metas, _, sr = load_clips(Path(folder), limit)
    counts = {
        row: {k: np.zeros(3) for k in ("true50", "true100", "moved50", "moved100")} for row in ("written", "moved")
    }
    for n, meta in enumerate(metas):
        prepared = prepare_video(Path(folder) / f"{meta['name']}.mp4", bundle)
        times = np.array([e["time"] for e in meta["events"]])
        moved = times + shift
        moved = moved[(moved >= 0) & (moved < meta["duration"])]
        cot = dict(meta["cot"])
        for row, c in (("written", cot), ("moved", {**cot, "temporal": shift_temporal(cot["temporal"], shift)})):
            audio = render(prepared, c, bundle, replace(settings, seed=settings.seed + meta["index"]))
            det = detect_onsets(audio, sr)
            for ref, name in ((times, "true"), (moved, "moved")):
                for tol in (0.05, 0.1):
                    f = onset_f1(det, ref, tol)
                    counts[row][f"{name}{int(tol * 1000)}"] += (f["tp"], f["fp"], f["fn"])
        if progress:
            progress(n + 1, len(metas))
    keys = {"true50": "true_f1_50", "true100": "true_f1_100", "moved50": "moved_f1_50", "moved100": "moved_f1_100"}
    rows = {row: {keys[k]: _f1(*v) for k, v in c.items()} for row, c in counts.items()}
    return {"split": metas[0]["split"] if metas else "", "n_clips": len(metas), "shift": shift, "rows": rows}


def follow_times_table(result: dict) -> str:
    """Markdown of `follow_times`: one line per take, onset F1 against the true and the moved events."""
    s = result["shift"]
    lines = [
        f"| take ({result['split']}, {result['n_clips']} clips) | F1 100ms, true events | F1 100ms, events {s:+g} s "
        "| F1 50ms, true | F1 50ms, moved |",
        "|---|---|---|---|---|",
    ]
    for row, label in (("written", "CoT as written"), ("moved", f"Temporal times moved {s:+g} s")):
        r = result["rows"][row]
        cells = [r[k] for k in ("true_f1_100", "moved_f1_100", "true_f1_50", "moved_f1_50")]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines)
