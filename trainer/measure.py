"""The measurements of issue 7: does a fine-tune move renders toward the house library, and does Flow-DPO
on preference pairs raise the preferred dimension's reward on held-out clips?

- `measure_house`: the start and the tuned model render the held-out house clips (`trainer.house`, their
  CoTs, seed ``seed + clip``); FoleyBench's embedding gives the Frechet distance of each model's renders
  to the house audio of the same clips, and its contrastive model the score of each render against its
  Semantic block (the new tags); FoleyBench on the original classes (`trainer.bench_guard`) says what the
  tune cost there. Relative changes: ``fd_drop = 1 - FD_tuned / FD_base`` (the issue asks >= 0.30),
  ``clap_gain = CLAP_tuned - CLAP_base`` (> 0), and the bench check's relative drops (<= 0.10). Two
  reference rows say what the numbers can reach: the house audio itself (its CLAP~ and level; FD 0) and
  the start model's codec reconstruction of it (encode, decode: the FD no render through that codec
  can be expected to beat). A tune may render at its own guidance, or at several (``tuned_settings``; its
  FoleyBench check too), the start model at ``settings``: a tuned conditional branch can need less guidance.
- `preference_pairs`: N takes of each of a set of FoleyWorld clips, scored by the reward heads; on the
  chosen dimension the best take is "starred" and the worst "rejected" (a designer who cares about that
  dimension), written as a pairs file for `trainer.dpo`.
- `measure_dpo`: pairs, Flow-DPO on them, then the chosen dimension's mean reward of both models on
  held-out FoleyWorld clips (other clips, other seeds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.atomic import write_text
from engine.bundle import ModelBundle, load_bundle
from engine.errors import UserInputError
from engine.pipeline import RenderSettings
from trainer.bench_guard import BenchCheck

Progress = Callable[[int, int], None]


def _renders(bundle: ModelBundle, folder: Path, metas: list[dict], gts: list[np.ndarray], settings, progress):
    """Each clip of a split folder rendered from its own CoT (seed settings.seed + clip position)."""
    from engine.bench.run import render_row

    row, out = render_row(bundle, folder, settings), []
    for k, (meta, gt) in enumerate(zip(metas, gts)):
        out.append(row(meta | {"index": k}, gt, bundle.sample_rate))
        if progress:
            progress(k + 1, len(metas))
    return out


def house_metrics(audios: list[np.ndarray], truth: list[np.ndarray], metas: list[dict], sr: int, models) -> dict:
    """FD of ``audios`` to the ``truth`` set (FoleyBench embeddings) and mean CLAP~ against each clip's
    Semantic block, overall and per class."""
    import torch

    from engine.bench.distribution import frechet_distance
    from engine.bench.mel import log_mel
    from engine.text_encoder import encode_sentences

    text = encode_sentences([m["cot"]["semantic"] for m in metas])

    @torch.no_grad()
    def embed(audio):
        mel = torch.from_numpy(log_mel(audio, sr))[None]
        return models.classifier(mel)[0][0].numpy(), models.contrastive.audio_embed(mel)[0]

    got = [embed(a) for a in audios]
    ref = np.stack([embed(a)[0] for a in truth])
    with torch.no_grad():
        clap = np.array([float(e @ models.contrastive.text_embed(t[None])[0]) for (_, e), t in zip(got, text)])
    emb = np.stack([g for g, _ in got])
    out = {"fd": float(frechet_distance(emb, ref)), "clap": float(clap.mean()), "level": mean_level(audios)}
    out["per_class"] = {}
    for cls in sorted({m["classes"][0] for m in metas}):
        rows = [k for k, m in enumerate(metas) if m["classes"][0] == cls]
        out["per_class"][cls] = {"fd": float(frechet_distance(emb[rows], ref[rows])), "clap": float(clap[rows].mean())}
    return out


def mean_level(audios: list[np.ndarray]) -> float:
    """Mean over clips of each clip's RMS level in dB full scale (both channels together; silence -120)."""
    levels = [10.0 * np.log10(np.mean(np.square(a, dtype=np.float64)) + 1e-12) for a in audios]
    return float(np.mean(levels))


def codec_reconstruction(bundle: ModelBundle, audios: list[np.ndarray]) -> list[np.ndarray]:
    """Each (N, 2) clip through ``bundle``'s codec, encoded and decoded to its own length (N, 2)."""
    import torch

    out = []
    with torch.no_grad():
        for a in audios:
            x = torch.from_numpy(np.ascontiguousarray(a.T, dtype=np.float32))[None]  # (1, 2, N)
            out.append(bundle.decode_latent(bundle.encode_audio(x), x.shape[-1])[0].numpy().T)
    return out


def tune_name(strength: float, how: RenderSettings | None = None, base: RenderSettings | None = None) -> str:
    """The row name of a tune at ``strength`` ("tuned" at full strength), with its guidance when it renders
    otherwise than the start model (``how`` against ``base``): "tuned at 0.7 (cfg 2, video 2.5)"."""
    name = "tuned" if strength == 1.0 else f"tuned at {strength:g}"
    if how is None or base is None or _guidance(how) == _guidance(base):
        return name
    video = "as text" if how.video_cfg is None else f"{how.video_cfg:g}"
    rescale = f", rescale {how.rescale:g}" if how.rescale else ""
    return f"{name} (cfg {how.cfg:g}, video {video}{rescale})"


def measure_house(
    test: str | Path,
    base_model: str,
    tuned_model: str,
    settings: RenderSettings,
    bench: BenchCheck,
    work: str | Path,
    progress: Progress | None = None,
    strengths: tuple[float, ...] = (1.0,),
    tuned_settings: tuple[RenderSettings, ...] = (),
    judge: str | Path | None = None,
) -> dict:
    """Both models on the held-out house clips and on FoleyBench's original classes (see the module doc), the
    tune at each of ``strengths`` (`trainer.lora.adapters.blended_generator`; 1: the tune as trained) rendered with
    each of ``tuned_settings`` (default ``settings`` alone). The start model's renders are made once for
    all of them. -> {"house_clips", "reference": {"house audio", "codec": metrics}, "house": {row: metrics},
    "settings": {"base": guidance}, "tunes": [{"strength", "guidance", "name", "fd_drop", "clap_gain",
    "foleybench"}]} and, with ``judge`` (a folder of metric models, e.g. from `train metrics
    --house-per-class`), "judge": {"folder", "reference", "house", "tunes": {name: {"fd_drop", "clap_gain"}}},
    the same renders scored by those models."""
    from engine.bench.metric_nets import load_metric_models
    from engine.bench.run import load_clips
    from trainer.bench_guard import check_many
    from trainer.lora.adapters import blended_generator, tuned_bundle

    if not strengths or any(not 0.0 <= s <= 1.0 for s in strengths) or len(set(strengths)) != len(strengths):
        raise UserInputError(f"--strengths must be distinct values in 0 .. 1, got {list(strengths)}")
    metas, truth, sr = load_clips(Path(test))
    models = load_metric_models()
    judged_by = load_metric_models(Path(judge)) if judge is not None else None  # a missing judge fails first
    base, tuned = load_bundle(base_model), load_bundle(tuned_model)
    blended = lambda s: blended_generator(base.generator, tuned.generator, s)  # noqa: E731
    weights = {s: tuned if s == 1.0 else tuned_bundle(tuned, blended(s), tune_name(s)) for s in strengths}
    hows = tuple(tuned_settings) or (settings,)
    plan = {tune_name(s, how, settings): (s, how) for s in strengths for how in hows}
    tunes = {name: weights[s] for name, (s, _) in plan.items()}
    bundles, how_of = {"base": base} | tunes, {"base": settings} | {name: how for name, (_, how) in plan.items()}
    judges = [models] + ([judged_by] if judged_by is not None else [])
    score = lambda audios: [house_metrics(audios, truth, metas, sr, m) for m in judges]  # noqa: E731 a row per judge
    references = {"house audio": score(truth), "codec": score(codec_reconstruction(base, truth))}
    rows = {  # each model's renders scored as soon as they are made, then let go
        name: score(_renders(bundles[name], Path(test), metas, truth, how, progress)) for name, how in how_of.items()
    }
    their = {name: how for name, (_, how) in plan.items()}
    verdicts = check_many(base, tunes, bench, Path(work) / "bench", progress, their)
    mine, *other = [
        _judged({n: r[k] for n, r in references.items()}, {n: r[k] for n, r in rows.items()}, plan)
        for k in range(len(judges))
    ]
    out = [
        {"strength": s, "guidance": _guidance(how), "name": name} | mine["tunes"][name] | {"foleybench": verdicts[name]}
        for name, (s, how) in plan.items()
    ]
    result = {
        "house_clips": len(metas),
        "reference": mine["reference"],
        "house": mine["house"],
        "settings": {"base": _guidance(settings)},
        "tunes": out,
    }
    if other:
        result["judge"] = {"folder": str(judge)} | other[0]
    return result


def _judged(reference: dict, rows: dict, plan: dict) -> dict:
    """One judge's house metrics of the references and of every model's renders, with each tune's FD drop
    and CLAP~ gain against the start model."""
    start = rows["base"]
    tunes = {
        name: {
            "fd_drop": 1.0 - rows[name]["fd"] / start["fd"] if start["fd"] > 0 else float("nan"),
            "clap_gain": rows[name]["clap"] - start["clap"],
        }
        for name in plan
    }
    return {"reference": reference, "house": rows, "tunes": tunes}


def _guidance(settings: RenderSettings) -> dict:
    """The guidance part of ``settings`` (what a tune may render with differently from the start model)."""
    return {
        "cfg": settings.cfg,
        "video_cfg": settings.video_cfg,
        "rescale": settings.rescale,
        "guidance_interval": list(settings.guidance_interval),
    }


def house_markdown(result: dict) -> str:
    """The measurement as markdown tables (house library, then FoleyBench on the original classes; with a
    judge, the house library again as its models score it)."""
    lines = [f"House library ({result['house_clips']} held-out clips)", ""]
    lines += _house_table(result.get("reference", {}), result["house"])
    base = result.get("settings", {}).get("base")
    if base and any(t.get("guidance", base) != base for t in result["tunes"]):
        lines += [f"start model's guidance {base}; a tune's name gives its own where it differs", ""]
    for tune in result["tunes"]:
        lines += [f"{tune['name']}: FD drop {tune['fd_drop']:.1%}, CLAP~ gain {tune['clap_gain']:+.3f}", ""]
        fb = tune["foleybench"]
        if fb.get("passed") is not None:
            lines += ["| FoleyBench | base | tuned | relative drop |", "|---|---|---|---|"]
            lines += [f"| {m} | {fb['base'][m]:.3f} | {fb['tuned'][m]:.3f} | {d:.1%} |" for m, d in fb["drops"].items()]
            lines.append("")
    if "judge" in result:
        judge = result["judge"]
        lines += [f"The same renders scored by the metric models in {judge['folder']}", ""]
        lines += _house_table(judge["reference"], judge["house"])
        for name, t in judge["tunes"].items():
            lines += [f"{name}: FD drop {t['fd_drop']:.1%}, CLAP~ gain {t['clap_gain']:+.3f}", ""]
    return "\n".join(lines).rstrip("\n")


def _house_table(reference: dict, house: dict) -> list[str]:
    lines = ["| row | FD | CLAP~ | level dBFS |", "|---|---|---|---|"]
    every = {f"({n})": r for n, r in reference.items()} | house
    lines += [f"| {n} | {r['fd']:.2f} | {r['clap']:.3f} | {r['level']:.1f} |" for n, r in every.items()]
    classes = sorted({c for r in house.values() for c in r.get("per_class", {})})
    if classes:
        lines += ["", "| row | " + " | ".join(f"{c} FD / CLAP~" for c in classes) + " |"]
        lines += ["|---|" + "---|" * len(classes)]
        for n, r in house.items():
            cells = [f"{r['per_class'][c]['fd']:.0f} / {r['per_class'][c]['clap']:.2f}" for c in classes]
            lines += [f"| {n} | " + " | ".join(cells) + " |"]
    return [*lines, ""]


# ----------------------------------------------------------------------------------------------- DPO


def _score(bundle, heads, video: Path, cot, settings: RenderSettings) -> tuple[np.ndarray, dict]:
    from engine.pipeline import prepare_video, render

    prepared = prepare_video(video, bundle)
    audio = render(prepared, cot, bundle, settings)
    scores, _ = heads.score_take(audio, bundle.sample_rate, prepared, cot)
    return audio, scores


def preference_pairs(
    model: str,
    out: str | Path,
    dimension: str,
    clips: int,
    takes: int,
    settings: RenderSettings,
    duration: float,
    progress: Progress | None = None,
    top: int = 1,
) -> Path:
    """``clips`` FoleyWorld train clips, ``takes`` renders each (seeds settings.seed + j); per clip each of
    the ``top`` takes best on ``dimension`` against each of the ``top`` worst (``top**2`` pairs; ties are
    left out). Takes and their scores are kept in ``out/takes`` and reused while the model, the settings
    and the clips are the same. -> the pairs file."""
    from engine.media import write_wav
    from engine.rewards import load_reward_heads
    from trainer.dpo import PreferencePair, write_pairs
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import write_split
    from trainer.ingest import state_digest

    if not 1 <= top <= takes // 2:
        raise UserInputError(f"need 1 <= --pair-top <= --takes // 2, got top={top}, takes={takes}")
    root, bundle, heads = Path(out), load_bundle(model), None
    metas = write_split("train", root / "clips", clips, WorldConfig(duration=duration))
    takes_dir = root / "takes"
    takes_dir.mkdir(parents=True, exist_ok=True)
    nets = [n for n in (bundle.generator, bundle.video_encoder, bundle.codec, bundle.cue_planner) if n is not None]
    key = {"weights": [state_digest(n) for n in nets], "settings": repr(settings), "takes": takes}
    pairs = []
    for k, meta in enumerate(metas):
        video, record = root / "clips" / f"{meta['name']}.mp4", takes_dir / f"{meta['name']}.json"
        files = [takes_dir / f"{meta['name']}_{j}.wav" for j in range(takes)]
        cached = json.loads(record.read_text()) if record.is_file() else {}
        if cached.get("key") != key or not all(f.is_file() for f in files):
            heads = heads or load_reward_heads()
            scores = []
            for j, f in enumerate(files):
                audio, s = _score(bundle, heads, video, meta["cot"], replace(settings, seed=settings.seed + j))
                write_wav(f, audio, bundle.sample_rate, subtype="FLOAT")
                scores.append(s)
            write_text(record, json.dumps({"key": key, "scores": scores}))
            cached = {"key": key, "scores": scores}
        values = np.array([s[dimension] for s in cached["scores"]])
        order = np.argsort(-values, kind="stable")
        for i in order[:top]:
            for j in order[::-1][:top]:
                if values[i] > values[j]:
                    pairs.append(PreferencePair(str(video), meta["cot"], str(files[i]), str(files[j]), meta["name"]))
        if progress:
            progress(k + 1, len(metas))
    return write_pairs(root / "pairs.json", pairs)


def held_out_reward(model: str, folder: Path, dimension: str, settings: RenderSettings) -> dict:
    """Mean reward of ``dimension`` (and the weighted total) of ``model``'s renders of a split folder's clips."""
    from engine.rewards import load_reward_heads

    bundle, heads = load_bundle(model), load_reward_heads()
    names = json.loads((folder / "index.json").read_text())["clips"]
    values = []
    for k, name in enumerate(names):
        meta = json.loads((folder / f"{name}.json").read_text())
        values.append(
            _score(bundle, heads, folder / f"{name}.mp4", meta["cot"], replace(settings, seed=settings.seed + k))[1]
        )
    means = {d: float(np.mean([v[d] for v in values])) for d in values[0]}
    return means | {"clips": len(values), "per_clip": [{d: float(x) for d, x in v.items()} for v in values]}


def paired_gain(before: list[float], after: list[float], seed: int = 0, draws: int = 10_000) -> dict:
    """Mean per-clip gain ``after - before``, the clips that improved, and a 95 % bootstrap interval of the
    mean gain (clips resampled with replacement; seeded)."""
    diff = np.asarray(after, float) - np.asarray(before, float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (draws, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(diff.mean()),
        "improved": int((diff > 0).sum()),
        "of": len(diff),
        "ci95": [float(low), float(high)],
    }


def measure_dpo(
    dpo_cfg,
    dimension: str,
    clips: int,
    takes: int,
    held_out: int,
    settings: RenderSettings,
    duration: float,
    progress=None,
    top: int = 1,
) -> dict:
    """Pairs from ``clips`` clips, Flow-DPO (``dpo_cfg``, its ``pairs`` replaced), and the chosen dimension's
    held-out reward before and after on ``held_out`` FoleyWorld val clips."""
    from trainer.dpo import train_dpo
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import write_split

    root = Path(dpo_cfg.out).parent / f"{Path(dpo_cfg.out).name}-data"
    pairs = preference_pairs(dpo_cfg.model, root, dimension, clips, takes, settings, duration, progress, top)
    n_pairs = len(json.loads(pairs.read_text())["pairs"])
    result = train_dpo(replace(dpo_cfg, pairs=str(pairs)), resume=False)
    val = root / "held_out"
    write_split("val", val, held_out, WorldConfig(duration=duration))
    before = held_out_reward(dpo_cfg.model, val, dimension, settings)
    after = held_out_reward(dpo_cfg.out, val, dimension, settings)
    out = {"dimension": dimension, "pairs": n_pairs, "pair_clips": clips, "takes": takes, "top": top}
    paired = paired_gain([v[dimension] for v in before.pop("per_clip")], [v[dimension] for v in after.pop("per_clip")])
    out |= {"held_out_clips": held_out, "before": before, "after": after}
    return out | {
        "gain": after[dimension] - before[dimension],
        "paired": paired,
        "dpo": {k: result[k] for k in ("step", "stopped", "bench_check")},
    }
