"""Ingest: videos with their own audio and tagged sounds become a dataset; windows, tags from names and a
CSV, bad files reported and skipped; the dataset read back for training (CoT edits, held-out split)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.bundle import load_bundle
from engine.cot import Cot
from engine.errors import UserInputError
from engine.pipeline import prepare_video
from engine.video_io import load_audio_track
from tests import train_data
from trainer.dataset import TrainDataset, collate_for, held_out_split
from trainer.ingest import (
    IngestConfig,
    fit_length,
    ingest,
    read_tags_csv,
    replay_folder,
    sound_folder,
    tags_from_name,
    video_folder,
    window_starts,
)

pytestmark = pytest.mark.usefixtures("one_thread")
WINDOW = 1.0  # seconds: a 2 s video gives two windows, the 3 s sound three


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    model = train_data.model_folder(root)
    vids = root / "videos"
    metas = train_data.videos(vids, 2)
    side = Cot("a ball knocking on wood", "knocks at 0.5 s", "dry", "left").to_dict()
    train_data.write_side_cot(vids / f"{metas[0]['name']}.mp4", side)
    (vids / f"{metas[0]['name']}.wav").unlink()  # this one's sound is only its AAC track; the other keeps its WAV
    (vids / "notes.mp4").write_text("not a video\n")
    from engine.media import write_mp4

    write_mp4(vids / "silent_film.mp4", np.full((24, 32, 32, 3), 90, np.uint8), 24.0)  # no audio track
    files = train_data.sounds(root / "sounds")
    taken: set[str] = set()
    sources = video_folder(vids, taken) + sound_folder(root / "sounds", files["csv"], taken)
    planned = Cot("planned by the test's planner", "", "", "")
    report = ingest(root / "data", load_bundle(model), sources, IngestConfig(window=WINDOW), lambda p: planned)
    return {"root": root, "model": model, "metas": metas, "side": side, "files": files, "report": report}


def test_tags_from_file_names_and_a_csv(tmp_path):
    from pathlib import Path

    assert tags_from_name(Path("metal_door-slam_03.wav")) == "metal door slam"
    assert tags_from_name(Path("frog croak take2.wav")) == "frog croak"
    assert tags_from_name(Path("rain.on.roof v2.flac")) == "rain on roof"
    csv = tmp_path / "t.csv"
    csv.write_text("File,Tags,notes\nsub/a.wav,  door ;  wood \nb.wav,\n", encoding="utf-8")
    assert read_tags_csv(csv) == {"a.wav": "door , wood"}
    csv.write_text("name,words\na.wav,x\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="columns 'file' and 'tags'"):
        read_tags_csv(csv)
    for name in ("door_slam.mp4", "door_slam.wav", "rain_on_roof.wav"):  # a video, its sound, a library sound
        (tmp_path / name).write_bytes(b"")
    assert [s.path.name for s in sound_folder(tmp_path)] == ["rain_on_roof.wav"]  # the video's own sound is not a tag


def test_windows_cover_a_clip_with_full_length_windows():
    assert window_starts(5, 10) == [0]
    assert window_starts(20, 10) == [0, 10]
    assert window_starts(25, 10) == [0, 10, 15]  # the last window ends at the clip's end
    assert fit_length(np.ones((3, 2), np.float32), 5).sum() == 6 and fit_length(np.ones((9, 2)), 5).shape == (5, 2)


def test_ingest_reports_bad_files_and_keeps_the_rest(setup):
    report = setup["report"]
    skipped = {s["file"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"notes.mp4", "silent_film.mp4", "broken.wav", "room_tone.wav", "blip.wav"}
    assert "not a readable video" in skipped["notes.mp4"] and "no audio track" in skipped["silent_film.mp4"]
    assert skipped["room_tone.wav"] == "is silent" and "shorter than 0.5 s" in skipped["blip.wav"]
    by_file = {s["file"].rsplit("/", 1)[-1]: s for s in report.sources}
    assert {k: len(v["windows"]) for k, v in by_file.items()} == {
        f"{setup['metas'][0]['name']}.mp4": 2,
        f"{setup['metas'][1]['name']}.mp4": 2,
        "metal_door-slam_03.wav": 2,  # 1.5 s: [0, 1) and [0.5, 1.5)
        "frog croak take2.wav": 3,
        "x17.flac": 1,
    }
    assert report.windows == 10 and report.summary()["videos"] == 2 and report.summary()["sounds"] == 3
    manifest = json.loads((report.folder / "dataset.json").read_text())
    assert manifest["skipped"] == report.skipped and len(manifest["sources"]) == 5


@pytest.mark.parametrize("which", [0, 1])  # 0: the file's AAC track; 1: the lossless WAV beside it
def test_video_windows_hold_the_codec_latents_of_the_files_own_audio(setup, which):
    bundle = load_bundle(setup["model"])
    video = setup["root"] / "videos" / f"{setup['metas'][which]['name']}.mp4"
    data = TrainDataset(setup["report"].folder, "decomposed")
    k = next(i for i, (j, w) in enumerate(data.entries) if data.sources[j]["file"] == str(video) and w["start"] > 0)
    item, (_, w) = data[k], data.entries[k]
    prepared = prepare_video(video, bundle)
    hop, lr = bundle.codec.config.hop, bundle.codec.config.latent_rate
    s = round(w["start"] * lr)
    wav = video.with_suffix(".wav")
    assert data.sources[data.entries[k][0]]["audio"] == (str(wav) if which else "track")
    if which:
        import soundfile as sf

        truth, sr = sf.read(wav, dtype="float32", always_2d=True)
        assert sr == 44100 and truth.shape[1] == 2
        audio = fit_length(truth, prepared.n_samples)
        track = fit_length(load_audio_track(video, 44100), prepared.n_samples)
        assert not np.array_equal(audio, track)  # AAC changed the samples: the WAV is what was taken
    else:
        audio = fit_length(load_audio_track(video, 44100), prepared.n_samples)
    piece = torch.from_numpy(np.ascontiguousarray(audio[s * hop : (s + w["T"]) * hop].T))[None]
    with torch.no_grad():
        expect = bundle.codec.encode(piece)[0].numpy().astype(np.float16)
    np.testing.assert_array_equal(item["z"], expect)
    np.testing.assert_array_equal(item["motion"], prepared.sync[s : s + w["T"]].astype(np.float16))
    assert w["T"] == round(WINDOW * lr) and item["frames"].shape[1:] == (64, 64, 3)
    i0, i1 = math.floor(s / lr * 8 + 1e-9), min(math.ceil((s + w["T"]) / lr * 8 - 1e-9), len(prepared.frames))
    np.testing.assert_array_equal(item["frames"], prepared.frames[i0:i1])  # the frames shown in the window


def test_cots_come_from_side_files_the_planner_and_the_tags(setup):
    data = TrainDataset(setup["report"].folder, "decomposed")
    cots = {s["file"].rsplit("/", 1)[-1]: (s["cot_source"], c) for s, c in zip(data.sources, data.cots)}
    first, second = (f"{m['name']}.mp4" for m in setup["metas"])
    assert cots[first] == ("file", Cot(**setup["side"]))
    assert cots[second][0] == "planner" and cots[second][1].semantic == "planned by the test's planner"
    assert cots["metal_door-slam_03.wav"] == ("name", Cot("metal door slam", "", "", ""))
    assert cots["x17.flac"] == ("csv", Cot("squeaky hinge, creak", "", "", ""))


def test_an_edited_cot_is_what_the_next_run_reads(setup, tmp_path):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(setup["report"].folder, folder)
    before = TrainDataset(folder, "decomposed")
    cot_file = folder / "cots" / f"{before.sources[2]['id']}.cot.json"
    cot_file.write_text(json.dumps({**json.loads(cot_file.read_text()), "semantic": "a heavy iron door"}))
    after = TrainDataset(folder, "decomposed")
    assert after.cots[2].semantic == "a heavy iron door" and after.fingerprint() != before.fingerprint()
    k = next(i for i, (j, _) in enumerate(after.entries) if j == 2)
    assert not np.array_equal(after[k]["text"][0], before[k]["text"][0])


def test_held_out_split_keeps_sources_together_and_collate_nulls_the_picture_of_sounds(setup):
    data = TrainDataset(setup["report"].folder, "decomposed")
    groups = data.groups()
    train, held = held_out_split(groups, 0.3, seed=0)
    assert sorted(train + held) == list(range(len(data))) and held
    assert not {groups[i] for i in train} & {groups[i] for i in held}  # no source on both sides
    assert held_out_split(groups, 0.3, seed=0) == (train, held)
    assert held_out_split(groups, 0.0, seed=0) == (list(range(len(data))), [])
    video, sound = data.is_video(0), next(i for i in range(len(data)) if not data.is_video(i))
    batch = collate_for(data)([data[0], data[sound]])
    assert video and batch["has_video"].tolist() == [True, False]
    assert batch["frames"][1].abs().sum() == 0 and batch["motion"][1].abs().sum() == 0
    assert batch["z"].shape == (2, 16, min(data[0]["z"].shape[1], data[sound]["z"].shape[1]))  # tiny codec: C = 16


def test_ingest_refuses_a_used_folder_and_input_without_any_good_file(setup, tmp_path):
    bundle = load_bundle(setup["model"])
    with pytest.raises(UserInputError, match="already holds a dataset"):
        ingest(setup["report"].folder, bundle, [])
    bad = sound_folder(setup["root"] / "sounds")
    bad = [s for s in bad if s.path.name in ("broken.wav", "blip.wav")]
    with pytest.raises(UserInputError, match="none of the 2 file"):
        ingest(tmp_path / "empty", bundle, bad)


def test_train_ingest_command(setup, tmp_path, capsys):
    from tests.test_pipeline import _cli

    args = ["train", "ingest", "--sounds", setup["root"] / "sounds", "--tags", setup["files"]["csv"]]
    rc, out, err = _cli(*args, "--model", setup["model"], "--out", tmp_path / "d", capsys=capsys)
    assert rc == 0, err
    line = json.loads(out)
    assert line["sounds"] == 3 and line["videos"] == 0 and len(line["skipped"]) == 3
    assert "skipped broken.wav" in err
    rc, out, err = _cli("train", "ingest", "--videos", tmp_path / "nowhere", "--out", tmp_path / "e", capsys=capsys)
    assert rc == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_replayed_foleyworld_clips_join_a_dataset_with_their_own_cots(setup, tmp_path):
    from trainer.foleyworld.scene import WorldConfig

    taken = {"replay_train_000000"}  # an id already used by the studio's own files
    world = WorldConfig(duration=train_data.DURATION, width=48, height=48)
    sources = replay_folder(tmp_path / "replay", 2, taken, world)
    metas = train_data.videos(tmp_path / "same", 2)  # the same clips written by the FoleyWorld writer
    assert [s.id for s in sources] == ["replay_train_000000_2", "replay_train_000001"]
    assert [s.cot.to_dict() for s in sources] == [m["cot"] for m in metas]
    assert all(s.kind == "video" and s.path.is_file() for s in sources)
    report = ingest(tmp_path / "d", load_bundle(setup["model"]), sources, IngestConfig(window=WINDOW))
    assert {s["cot_source"] for s in report.sources} == {"foleyworld"} and report.windows == 4
    data = TrainDataset(tmp_path / "d", "decomposed")
    assert data.cots[0].semantic == metas[0]["cot"]["semantic"]


def test_fast_grpo_runs_on_the_datasets_video_windows(setup, tmp_path):
    from trainer.bench_guard import BenchCheck
    from trainer.dataset import dataset_prompts
    from trainer.grpo.learn import GrpoConfig, train_grpo

    bundle = load_bundle(setup["model"])
    train, held = dataset_prompts(setup["report"].folder, bundle, 0.5, seed=0)
    assert len(train) == len(held) == 2  # the two video sources, two windows each; sounds are left out
    assert {p.name.split("@")[0] for p in train}.isdisjoint({p.name.split("@")[0] for p in held})
    assert train[0].sync.shape == (1, train[0].n_latent, bundle.generator.config.sync_dim)
    cfg = GrpoConfig(model=str(setup["model"]), out=str(tmp_path / "rl"), dataset=str(setup["report"].folder))
    cfg = replace(cfg, held_out=0.5, iterations=1, group=2, steps=2, window=1, minibatch=2, eval_every=0, clips=2)
    result = train_grpo(replace(cfg, bench=BenchCheck(clips=0)), resume=False)  # the guard: tests/test_grpo.py
    assert result["finished"] and "eval_weighted" in result["history"][-1]
    assert load_bundle(tmp_path / "rl").generator.config == bundle.generator.config
