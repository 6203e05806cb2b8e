"""Training of the FoleyBench metric models (``python launch.py train metrics``).

Data: FoleyWorld ``train`` clips (audio only) for training, ``val`` clips for the reported accuracy.
``house_per_class`` > 0 adds clips of the house library's four classes (`trainer.house`, its "judge" seeds,
apart from every clip a tune trains or is measured on) to both, the classifier then naming 20 classes: a
judge for `train measure --judge` that knows the house sounds, as a contrastive model trained on a wide
library would, where the shipped models heard FoleyWorld alone.
Three models, one architecture (`engine.bench.metric_nets.AudioNet`):
- classifier: multi-label sound-event classifier (binary cross-entropy over the 16 classes, or 20);
- contrastive: audio tower + projection of frozen MiniLM embeddings of the Semantic block (InfoNCE);
- quality: clean render (1) against the same render degraded (0) by `trainer.degrade`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.bench.mel import log_mel
from engine.bench.metric_nets import AudioNet, AudioNetConfig, ContrastiveModel, save_model
from engine.text_encoder import encode_sentences
from trainer.degrade import degrade
from trainer.foleyworld.classes import CLASS_NAMES
from trainer.foleyworld.scene import WorldConfig
from trainer.foleyworld.splits import make_clip
from trainer.house import HOUSE_CLASSES, house_clip

HOUSE_PREFIX = "house:"  # a build_dataset job of a house class


def _clip_features(job: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Worker: (split, index) -> (clean log-mel, degraded log-mel, class names, semantic text); split
    ``house:<class>`` is clip ``index`` of that house class from the library's judge seeds."""
    split, index = job
    if split.startswith(HOUSE_PREFIX):
        scene, rendered, cot = house_clip("judge", split[len(HOUSE_PREFIX) :], index, WorldConfig())
    else:
        clip = make_clip(split, index)
        scene, rendered, cot = clip.scene, clip.audio, clip.cot
    sr = scene.config.sample_rate
    audio = rendered.audio
    bad, _ = degrade(audio, sr, np.random.default_rng([scene.seed, 7]))
    return log_mel(audio, sr), log_mel(bad, sr), scene.classes, cot.semantic


def build_dataset(
    split: str,
    count: int,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    house: tuple[int, int] = (0, 0),
    classes: list[str] = CLASS_NAMES,
) -> dict:
    """Features of ``count`` clips of ``split`` and, with ``house`` = (first, n), house clips first .. first +
    n - 1 of every house class, computed in ``workers`` processes; labels multi-hot over ``classes``."""
    first, n_house = house
    jobs = [(split, i) for i in range(count)]
    jobs += [(HOUSE_PREFIX + c, first + k) for c in HOUSE_CLASSES for k in range(n_house)]
    rows = []
    with get_context("spawn").Pool(workers) as pool:
        for k, row in enumerate(pool.imap(_clip_features, jobs, chunksize=8)):
            rows.append(row)
            if progress:
                progress(k + 1, len(jobs))
    labels = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, row in enumerate(rows):
        for c in row[2]:
            labels[i, classes.index(c)] = 1.0
    return {
        "clean": np.stack([r[0] for r in rows]),
        "bad": np.stack([r[1] for r in rows]),
        "labels": labels,
        "text": [r[3] for r in rows],
    }


def _batches(n: int, bs: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, bs):
        yield order[i : i + bs]


def _fit(
    model: torch.nn.Module, loss_fn: Callable, n: int, epochs: int, seed: int, lr: float = 2e-3, bs: int = 32
) -> None:
    """Adam with cosine decay over ``epochs`` passes of ``n`` examples."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        for idx in _batches(n, bs, rng):
            loss = loss_fn(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def _set_norm(net: AudioNet, mel: np.ndarray) -> None:
    net.mean.fill_(float(mel.mean()))
    net.std.fill_(float(mel.std()))


def train_classifier(data: dict, epochs: int, seed: int) -> AudioNet:
    torch.manual_seed(seed)
    net = AudioNet(config=AudioNetConfig(n_out=data["labels"].shape[1]))
    _set_norm(net, data["clean"])
    x, y = torch.from_numpy(data["clean"]), torch.from_numpy(data["labels"])
    _fit(net, lambda i: F.binary_cross_entropy_with_logits(net(x[i])[1], y[i]), len(x), epochs, seed)
    return net


def train_quality(data: dict, epochs: int, seed: int) -> AudioNet:
    torch.manual_seed(seed + 1)
    net = AudioNet(config=AudioNetConfig(n_out=1))
    _set_norm(net, data["clean"])
    x = torch.from_numpy(np.concatenate([data["clean"], data["bad"]]))
    y = torch.cat([torch.ones(len(data["clean"])), torch.zeros(len(data["bad"]))])
    _fit(net, lambda i: F.binary_cross_entropy_with_logits(net(x[i])[1][:, 0], y[i]), len(x), epochs, seed)
    return net


def train_contrastive(data: dict, text_emb: torch.Tensor, epochs: int, seed: int) -> ContrastiveModel:
    torch.manual_seed(seed + 2)
    model = ContrastiveModel(config=AudioNetConfig(n_out=128))
    _set_norm(model.audio, data["clean"])
    x = torch.from_numpy(data["clean"])

    def loss(i: np.ndarray) -> torch.Tensor:
        a, t = model.audio_embed(x[i]), model.text_embed(text_emb[i])
        logits = model.logit_scale.clamp(max=4.6).exp() * a @ t.T
        target = torch.arange(len(i))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    _fit(model, loss, len(x), epochs, seed, bs=64)
    return model


@torch.no_grad()
def evaluate(
    classifier: AudioNet, quality: AudioNet, contrastive: ContrastiveModel, val: dict, val_text: torch.Tensor
) -> dict:
    """Held-out figures: class recall@k, quality AUC-style accuracy, text retrieval and paired cosine."""
    x = torch.from_numpy(val["clean"])
    probs = torch.sigmoid(classifier(x)[1]).numpy()
    k = val["labels"].sum(1).astype(int)
    topk = [set(np.argsort(-p)[:kk]) for p, kk in zip(probs, k)]
    recall = float(np.mean([len(s & set(np.flatnonzero(lab))) / kk for s, lab, kk in zip(topk, val["labels"], k)]))
    q_clean = torch.sigmoid(quality(x)[1][:, 0])
    q_bad = torch.sigmoid(quality(torch.from_numpy(val["bad"]))[1][:, 0])
    a, t = contrastive.audio_embed(x), contrastive.text_embed(val_text)
    sims = a @ t.T
    paired = sims.diag()
    shuffled = sims.roll(1, dims=1).diag()
    return {
        "class_recall_at_k": recall,
        "quality_accuracy": float(((q_clean > 0.5).float().mean() + (q_bad < 0.5).float().mean()) / 2),
        "clap_paired": float(paired.mean()),
        "clap_shuffled": float(shuffled.mean()),
        "clap_retrieval_top1": float((sims.argmax(1) == torch.arange(len(x))).float().mean()),
    }


def train_metric_models(
    out_dir: Path,
    n_train: int = 3000,
    n_val: int = 300,
    epochs: int = 12,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    house_per_class: int = 0,
) -> dict:
    """Generate data, train the three models, evaluate on val, save under ``out_dir``. ``house_per_class``
    house clips of each house class join the training data (and a quarter as many others the validation
    data; the figures of the FoleyWorld val clips, and of those as ``house``)."""
    t0 = time.perf_counter()
    classes = CLASS_NAMES + (list(HOUSE_CLASSES) if house_per_class else [])
    n_house_val = max(1, house_per_class // 4) if house_per_class else 0
    train = build_dataset("train", n_train, progress=progress, house=(0, house_per_class), classes=classes)
    val = build_dataset("val", n_val, house=(house_per_class, n_house_val), classes=classes)
    t_data = time.perf_counter() - t0
    text_train, text_val = encode_sentences(train["text"]), encode_sentences(val["text"])
    torch.set_num_threads(max(1, torch.get_num_threads()))
    classifier = train_classifier(train, epochs, seed)
    quality = train_quality(train, max(2, epochs // 2), seed)
    contrastive = train_contrastive(train, text_train, epochs, seed)
    rows = lambda part: {k: v[part] for k, v in val.items()}  # noqa: E731
    report = evaluate(classifier, quality, contrastive, rows(slice(0, n_val)), text_val[:n_val])
    if house_per_class:  # the house rows of val (its last ones), reported apart
        report["house"] = evaluate(classifier, quality, contrastive, rows(slice(n_val, None)), text_val[n_val:])
    report.update(
        {
            "n_train": n_train,
            "n_val": n_val,
            "house_per_class": house_per_class,
            "epochs": epochs,
            "data_seconds": round(t_data, 1),
            "total_seconds": round(time.perf_counter() - t0, 1),
        }
    )
    out_dir = Path(out_dir)
    save_model(classifier, out_dir / "classifier.safetensors", "classifier", classifier.config, {"classes": classes})
    save_model(quality, out_dir / "quality.safetensors", "quality", quality.config)
    save_model(contrastive, out_dir / "contrastive.safetensors", "contrastive", contrastive.audio.config)
    return report
