"""The house library: four classes FoleyWorld does not have, each heard and seen at its events; the library
on disk (videos with their CoT, tagged sounds, held-out test clips) and the measurement's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.foleyworld.classes import CLASSES
from trainer.foleyworld.scene import WorldConfig
from trainer.house import HOUSE_CLASSES, house_clip, render_house_frames, write_library
from trainer.ingest import sound_folder, tags_from_name, video_folder

CFG = WorldConfig(duration=2.5, width=48, height=48)


def test_the_house_classes_are_new():
    assert not set(HOUSE_CLASSES) & set(CLASSES) and len(HOUSE_CLASSES) == 4
    words = " ".join(c.tags for c in HOUSE_CLASSES.values())
    assert all(name.split("_")[0] not in words for name in CLASSES)  # no FoleyWorld class named in the tags


@pytest.mark.parametrize("cls", list(HOUSE_CLASSES))
def test_each_class_sounds_and_moves_at_its_events(cls):
    scene, audio, cot = house_clip("videos", cls, 0, CFG)
    x, sr = audio.audio, CFG.sample_rate
    assert x.shape == (CFG.n_samples, 2) and np.isfinite(x).all() and 0.01 < np.abs(x).max() <= 0.95
    events = scene.sources[0].events
    assert events and all(0.25 <= t <= CFG.duration - 0.45 for t in events)
    t = events[0]
    before = np.abs(x[int((t - 0.2) * sr) : int((t - 0.02) * sr)]).mean()
    after = np.abs(x[int(t * sr) : int((t + 0.1) * sr)]).mean()
    assert after > 3 * before  # the event is heard when it happens
    frames = render_house_frames(scene).astype(np.int16)
    assert frames.shape == (CFG.n_frames, 48, 48, 3)
    k = int(round(t * CFG.fps))
    moved = np.abs(frames[1:] - frames[:-1]).sum(axis=(1, 2, 3))  # (F - 1,) change between frames
    assert moved[max(k - 2, 0) : k + 3].max() > 0  # and seen
    assert HOUSE_CLASSES[cls].event in cot.temporal.lower() and "hit" not in cot.temporal.lower()


def test_the_library_on_disk(tmp_path):
    report = write_library(tmp_path, per_class=1, duration=2.0, test_per_class=1, sounds_per_class=1)
    assert report["videos"] == report["sounds"] == report["test"] == 4
    videos = video_folder(tmp_path / "videos")
    assert len(videos) == 4 and all(v.cot_source == "file" and v.cot.semantic for v in videos)
    sounds = sound_folder(tmp_path / "sounds")
    assert sorted(s.cot.semantic for s in sounds) == sorted(c.tags for c in HOUSE_CLASSES.values())
    assert all(tags_from_name(s.path) == s.cot.semantic for s in sounds)
    index = json.loads((tmp_path / "test" / "index.json").read_text())
    meta = json.loads((tmp_path / "test" / f"{index['clips'][0]}.json").read_text())
    assert len(index["clips"]) == 4 and meta["classes"][0] in HOUSE_CLASSES and meta["cot"]["semantic"]
    assert (tmp_path / "test" / f"{index['clips'][0]}.mp4").is_file()
    seeds = {p: house_clip(p, "frog_croak", 0, CFG)[0].seed for p in ("videos", "sounds", "test", "judge")}
    assert len(set(seeds.values())) == 4  # each part draws its own clips (the judge's too)


def test_house_metrics_fd_is_zero_for_the_house_audio_itself_and_large_for_noise():
    from engine.bench.metric_nets import load_metric_models
    from trainer.measure import house_metrics

    clips = [house_clip("test", cls, k, WorldConfig(duration=2.0)) for cls in HOUSE_CLASSES for k in range(2)]
    truth = [a.audio for _, a, _ in clips]
    metas = [{"classes": [s.sources[0].cls], "cot": c.to_dict()} for s, _, c in clips]
    models = load_metric_models()
    same = house_metrics(truth, truth, metas, 44100, models)
    noise = [np.random.default_rng(k).standard_normal(a.shape).astype(np.float32) * 0.05 for k, a in enumerate(truth)]
    other = house_metrics(noise, truth, metas, 44100, models)
    assert same["fd"] == pytest.approx(0.0, abs=1e-3) and other["fd"] > 10.0
    assert set(same["per_class"]) == set(HOUSE_CLASSES) and -1.0 <= same["clap"] <= 1.0


def test_a_judge_learns_the_house_classes_from_its_own_clips(tmp_path):
    from engine.bench.metric_nets import load_metric_models
    from trainer.foleyworld.classes import CLASS_NAMES
    from trainer.metric_models import build_dataset, train_metric_models

    classes = CLASS_NAMES + list(HOUSE_CLASSES)
    data = build_dataset("train", 2, house=(3, 1), classes=classes)
    assert data["clean"].shape[0] == 2 + 4 and data["labels"].shape == (6, 20)
    for row, cls in zip(data["labels"][2:], HOUSE_CLASSES):  # the house rows: their class alone
        assert np.flatnonzero(row).tolist() == [classes.index(cls)]
    judge = [house_clip("judge", cls, 3, WorldConfig())[2].semantic for cls in HOUSE_CLASSES]
    assert data["text"][2:] == judge and data["labels"][:2, 16:].sum() == 0

    report = train_metric_models(tmp_path, n_train=4, n_val=2, epochs=1, house_per_class=2)
    models = load_metric_models(tmp_path)
    assert models.classes == classes and report["house_per_class"] == 2
    assert 0.0 <= report["house"]["class_recall_at_k"] <= 1.0 and 0.0 <= report["class_recall_at_k"] <= 1.0


def test_a_judge_needs_its_own_folder(capsys):
    import launch

    assert launch.main(["train", "metrics", "--house-per-class", "4"]) != 0
    assert "give --out" in capsys.readouterr().err


def test_measure_seed_reaches_the_house_renders_and_the_foleybench_check(tmp_path, monkeypatch):
    import launch
    import trainer.measure

    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "index.json").write_text(json.dumps({"clips": []}))
    seen = {}

    def fake_measure(test, model, tuned, settings, bench, *rest):
        seen.update(house=settings.seed, bench=bench.seed, clips=bench.clips)
        return {}

    monkeypatch.setattr(trainer.measure, "measure_house", fake_measure)
    monkeypatch.setattr(trainer.measure, "house_markdown", lambda result: "")
    args = ["train", "measure", "--house", str(tmp_path), "--tuned", str(tmp_path / "t"), "--bench-clips", "4"]
    assert launch.main([*args, "--seed", "1000"]) == 0
    assert seen == {"house": 1000, "bench": 1000, "clips": 4}
