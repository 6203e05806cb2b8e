"""The studio's actions without a browser: import, CoT editing, settings, renders (scores, seeds, best-of-N,
cancel, two sessions at once), compare plots and export, each bad input refused with a message and the
project left as it was. Renders use the tiny test bundle (2-4 sampler steps)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from app.plots import DB_RANGE
from app.settings import StudioSettings
from app.studio_actions import BLOCK_TOKENS, CANCELLED, FIELDS, StudioActions, as_text, block_tokens, checked_cot
from engine.bundle import MODELS_DIR, load_bundle, save_bundle
from engine.errors import UserInputError
from engine.pipeline import RenderSettings, prepare_video, render
from engine.rewards import weighted_total
from tests.bundles import tiny_bundle
from tests.media_files import write_video

WEIGHTS = (1.0, 0.6, 0.1, 0.4)  # the defaults, in slider order
COT = ("a wooden door slams", "one slam at 1 s", "dry, close", "on the left", "speech, music")


def settings_values(seed=7, locked=True, steps=3, candidates=1, guidance=3.5, weights=WEIGHTS):
    """The page's settings controls in order: four weights, candidates, seed, lock, steps, guidance."""
    return (*weights, candidates, seed, locked, steps, guidance)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    model = root / "tiny"
    save_bundle(tiny_bundle(), model)
    files = {"model": model}
    files["mp4"] = root / "door.mp4"
    write_video(files["mp4"], fmt="mp4", vcodec="libx264", fps=24.0, seconds=2.0, acodec="aac")
    files["mkv"] = root / "street.mkv"
    write_video(files["mkv"], fmt="matroska", vcodec="libx264", fps=30.0, seconds=1.5)
    files["webm"] = root / "rain.webm"
    write_video(files["webm"], fmt="webm", vcodec="libvpx-vp9", fps=25.0, seconds=1.2, acodec="libopus",
                sample_rate=48000)  # fmt: skip
    return files


@pytest.fixture
def actions(tmp_path, media) -> StudioActions:
    settings = StudioSettings(projects_dir=tmp_path / "projects", model=str(media["model"]), max_upload_mb=1.0)
    return StudioActions(settings)


def upload(tmp_path: Path, src: Path, name: str | None = None) -> str:
    """A copy of ``src`` where Gradio would put an upload (its own folder, the original file name)."""
    uploads = tmp_path / "upload"
    uploads.mkdir(exist_ok=True)
    folder = uploads / str(len(list(uploads.iterdir())))
    folder.mkdir()
    dst = folder / (name or src.name)
    shutil.copyfile(src, dst)
    return str(dst)


def project_with_clip(actions: StudioActions, tmp_path: Path, video: Path) -> tuple[int, int]:
    view = actions.create_project("Doors")
    view = actions.import_video(view["project"], upload(tmp_path, video))
    return view["project"], view["clip"]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "studio.db" not in p.name)


def test_import_shows_the_video_facts_and_original_audio(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    view = actions.open_clip(project, clip)
    assert "2.000 s" in view["media_info"] and "24.000 fps" in view["media_info"] and "96×64" in view["media_info"]
    assert "2 ch audio" in view["media_info"] and Path(view["original_audio"]).is_file()
    assert view["video"].endswith("source.mp4")  # browsers play MP4 as it is
    assert view["spectrograms"] is not None  # the original audio, before any take

    view = actions.import_video(project, upload(tmp_path, media["mkv"]))
    assert "1.500 s" in view["media_info"] and "30.000 fps" in view["media_info"] and "no audio" in view["media_info"]
    assert view["original_audio"] is None and view["video"].endswith("preview.mp4")
    with av.open(view["video"]) as preview, av.open(str(media["mkv"])) as src:  # the picture stream copied
        assert [bytes(p) for p in preview.demux(preview.streams.video[0]) if p.size] == [
            bytes(p) for p in src.demux(src.streams.video[0]) if p.size
        ]
    view = actions.import_video(project, upload(tmp_path, media["webm"]))
    assert "1.200 s" in view["media_info"] and "25.000 fps" in view["media_info"]
    assert len(actions.store.list_clips(project)) == 3


@pytest.mark.parametrize(
    "name,data,needle",
    [
        ("notes.mp4", b"these are my notes, not a video\n" * 20, "notes.mp4 is not a readable video"),
        ("empty.mp4", b"", "empty"),
        ("huge.mp4", b"\x00" * (1024 * 1024 + 10), "limit"),
        ("notes.txt", b"text", "not a video type"),
    ],
)
def test_bad_uploads_get_a_message_and_change_nothing(actions, media, tmp_path, name, data, needle):
    project, _ = project_with_clip(actions, tmp_path, media["mp4"])
    before_files, before_clips = files_under(actions.store.root), actions.store.list_clips(project)
    bad = tmp_path / "bad" / name
    bad.parent.mkdir()
    bad.write_bytes(data)
    view = actions.import_video(project, str(bad))
    assert view == {"upload": None, "message": view["message"]} and view["message"].startswith("⚠")
    assert needle in view["message"]
    assert files_under(actions.store.root) == before_files and actions.store.list_clips(project) == before_clips


def test_over_long_blocks_are_refused_and_nothing_is_saved(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    assert "Blocks saved" in actions.save_cot(clip, *COT)["message"]
    timed = actions.save_cot(clip, COT[0], "slams at 0.5, 2.0 s; a creak loudest around 1.2 s", *COT[2:])
    assert "Temporal block: 2 onsets, 0.5 to 2 s." in timed["message"]  # the times a render reads, said back
    actions.save_cot(clip, *COT)
    long = ("thud " * 200).strip()  # 999 characters, the limit is 600
    with pytest.raises(UserInputError, match="too long: semantic has 999 characters"):
        actions.save_cot(clip, long, *COT[1:])
    with pytest.raises(UserInputError, match="too long"):
        actions.render_take(project, clip, long, *COT[1:], *settings_values())
    got = actions.store.get_clip(clip)
    assert got.edited == dict(zip(FIELDS, COT)) and actions.store.list_takes(clip) == []
    assert checked_cot(["  a   door ", "", "", "", ""])["semantic"] == "a door"


def test_negative_weights_are_refused_and_the_stored_ones_come_back(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    actions.save_settings(project, *settings_values(weights=(2.0, 0.6, 0.1, 0.4)))
    view = actions.save_settings(project, *settings_values(weights=(2.0, -0.5, 0.1, 0.4)))
    assert "temporal weight is -0.5" in view["message"] and "not changed" in view["message"]
    assert view["w_temporal"] == 0.6 and view["w_semantic"] == 2.0  # the controls go back
    assert actions.store.get_project(project).settings["weights"]["temporal"] == 0.6
    with pytest.raises(UserInputError, match="weights must be 0 or more"):
        actions.render_take(project, clip, *COT, *settings_values(weights=(1.0, 0.6, -0.1, 0.4)))
    with pytest.raises(UserInputError, match="at least one reward weight"):
        actions.render_take(project, clip, *COT, *settings_values(weights=(0.0, 0.0, 0.0, 0.0)))
    assert actions.store.list_takes(clip) == []


def test_renders_are_scored_takes_with_their_settings(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    first = actions.render_take(project, clip, *COT, *settings_values(seed=11))
    second = actions.render_take(project, clip, *COT, *settings_values(seed=11))  # same seed: same audio, new take
    third = actions.render_take(project, clip, *COT, *settings_values(seed=11, locked=False))
    assert first["seed"] == second["seed"] == 11 and third["seed"] != 11  # the lock
    takes = {t.number: t for t in actions.store.list_takes(clip)}
    assert sorted(takes) == [1, 2, 3] and len({t.path for t in takes.values()}) == 3
    a1, sr = sf.read(takes[1].path, dtype="float32")
    a2, _ = sf.read(takes[2].path, dtype="float32")
    assert sr == 44100 and a1.shape == (88200, 2) and np.array_equal(a1, a2)
    t = takes[1]
    assert set(t.scores) == {"semantic", "temporal", "aesthetic", "spatial"}
    assert all(0.0 <= v <= 1.0 for v in t.scores.values())
    assert t.total == pytest.approx(weighted_total(t.scores, dict(zip(t.scores, WEIGHTS))))
    assert t.cot == dict(zip(FIELDS, COT)) and t.seed == 11 and t.settings["steps"] == 3
    rows = first["takes_table"]
    assert rows[0][0] == "Take 1" and rows[0][2] == round(t.total, 3)
    assert "Rendered take 1" in first["message"]


def test_best_of_n_keeps_the_best_candidate(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    actions.render_take(project, clip, *COT, *settings_values(seed=100, candidates=3, steps=2))
    (take,) = actions.store.list_takes(clip)
    cands = take.info["candidates"]
    assert [c["seed"] for c in cands] != [] and sorted(c["seed"] for c in cands) == [100, 101, 102]
    assert take.seed == cands[0]["seed"] and take.total == pytest.approx(max(c["total"] for c in cands), abs=1e-4)


def test_cancel_stops_the_render_and_writes_nothing(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    before = files_under(actions.store.root)
    stepping, steps_seen, result = threading.Event(), [], {}

    def progress(fraction: float, text: str) -> None:
        steps_seen.append(text)
        if "step" in text:
            stepping.set()

    def session() -> None:
        values = (*COT, *settings_values(steps=50))
        result.update(actions.render_take(project, clip, *values, session="window-1", progress=progress))

    worker = threading.Thread(target=session)
    worker.start()
    assert stepping.wait(120)
    reply = actions.cancel_render("window-1")  # from another thread, as the page's Cancel button does
    worker.join()
    assert reply == {"message": CANCELLED} and result["message"] == CANCELLED and "takes_table" not in result
    assert actions.store.list_takes(clip) == [] and files_under(actions.store.root) == before
    assert not any("step 50/50" in s for s in steps_seen)
    assert actions.cancel_render("window-1")["message"].startswith("No render")
    # a render that is not cancelled is untouched by another window's cancel
    actions.cancel_render("window-2")
    actions.render_take(project, clip, *COT, *settings_values(steps=2), session="window-1")
    assert len(actions.store.list_takes(clip)) == 1


def test_two_sessions_rendering_at_once_get_their_own_takes(actions, media, tmp_path):
    project, clip_a = project_with_clip(actions, tmp_path, media["mp4"])
    clip_b = actions.import_video(project, upload(tmp_path, media["webm"]))["clip"]
    jobs = {
        "a": (clip_a, COT, 21),
        "b": (clip_b, ("rain on a tin roof", "steady", "wide", "everywhere", ""), 22),
    }
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def session(name: str) -> None:
        clip, cot, seed = jobs[name]
        try:
            barrier.wait()
            results[name] = actions.render_take(project, clip, *cot, *settings_values(seed=seed), session=name)
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    bundle = load_bundle(media["model"])
    for name, (clip, cot, seed) in jobs.items():
        (take,) = actions.store.list_takes(clip)
        assert take.seed == seed and take.cot == dict(zip(FIELDS, cot))
        assert results[name]["takes_table"][0][0] == "Take 1" and results[name]["seed"] == seed
        alone = render(prepare_video(actions.store.get_clip(clip).source, bundle), take.cot, bundle,
                       RenderSettings(seed=seed, steps=3, cfg=3.5))  # fmt: skip
        audio, _ = sf.read(take.path, dtype="float32")
        np.testing.assert_allclose(audio, alone, atol=1e-4)


def test_compare_plots_share_the_colour_scale_and_the_video_time_axis(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    for seed in (1, 2):
        actions.render_take(project, clip, *COT, *settings_values(seed=seed, steps=2))
    a, b = (t.id for t in actions.store.list_takes(clip))
    view = actions.compare(clip, a, b)
    fig = view["spectrograms"]
    panels = [ax for ax in fig.axes if ax.collections and ax.get_ylabel() != "dB"]  # not the colour bar
    assert len(panels) == 6  # original, A, B; left above right
    assert {m.get_clim() for ax in panels for m in ax.collections} == {DB_RANGE}
    assert {ax.get_xlim() for ax in panels} == {(0.0, 2.0)}
    assert [ax.get_title() for ax in fig.axes[:3] if ax.get_title()][:1] == ["original audio"]
    lines = view["positions"].axes[0].get_lines()
    assert len([ln for ln in lines if ln.get_label().startswith(("original", "Take"))]) == 3
    assert view["positions"].axes[0].get_xlim() == (0.0, 2.0)


def test_rating_and_export(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    actions.render_take(project, clip, *COT, *settings_values(steps=2))
    (take,) = actions.store.list_takes(clip)
    view = actions.rate_take(clip, take.id, 1)
    assert view["takes_table"][0][1] == "★" and actions.store.get_take(take.id).rating == 1
    actions.rate_take(clip, take.id, -1)
    assert actions.store.get_take(take.id).rating == -1
    formats = ["WAV 48 kHz 24-bit", "FLAC 48 kHz 24-bit", "MP4 (video copied + take)", "CoT JSON"]
    view = actions.export_take(take.id, formats, True, -20.0)
    files = {Path(f).suffix: Path(f) for f in view["export_files"]}
    assert set(files) == {".wav", ".flac", ".mp4", ".json"} and "LUFS" in view["message"]
    info = sf.info(files[".wav"])
    assert (info.samplerate, info.subtype, info.frames) == (48000, "PCM_24", 96000)
    with pytest.raises(UserInputError, match="format"):
        actions.export_take(take.id, [], False, None)


def test_plan_without_a_planner_is_a_clear_message(actions, media, tmp_path):
    _, clip = project_with_clip(actions, tmp_path, media["mp4"])
    with pytest.raises(UserInputError, match="has no planner"):
        actions.plan(clip)


@pytest.mark.skipif(not (MODELS_DIR / "default" / "planner.safetensors").is_file(), reason="no shipped planner")
def test_plan_keeps_the_planners_text_and_reset_brings_a_block_back(tmp_path, media):
    model = tmp_path / "tiny-with-planner"
    shutil.copytree(media["model"], model)
    shutil.copyfile(MODELS_DIR / "default" / "planner.safetensors", model / "planner.safetensors")
    actions = StudioActions(StudioSettings(projects_dir=tmp_path / "projects", model=str(model)))
    _, clip = project_with_clip(actions, tmp_path, media["mp4"])
    seen = []
    view = actions.plan(clip, progress=lambda f, d: seen.append(f))
    planned = {f: view[f"cot_{f}"] for f in FIELDS}
    assert planned["semantic"] and seen and seen[-1] == 1.0
    edited = ["my own semantic block", *(planned[f] for f in FIELDS[1:])]
    actions.save_cot(clip, *edited)
    got = actions.store.get_clip(clip)
    assert got.planned["semantic"] == planned["semantic"] and got.edited["semantic"] == "my own semantic block"
    view = actions.reset_block(clip, "semantic", *edited)
    assert view["cot_semantic"] == planned["semantic"]
    assert actions.store.get_clip(clip).edited["semantic"] == planned["semantic"]


def test_blocks_over_the_text_encoders_token_limit_are_refused(actions, media, tmp_path):
    _, clip = project_with_clip(actions, tmp_path, media["mp4"])
    # "a" is one token of all-MiniLM-L6-v2; [CLS] and [SEP] make two more: 126 words are exactly 128 tokens
    assert block_tokens("a " * 126) == BLOCK_TOKENS == 128 and block_tokens("") == 2
    assert checked_cot(["a " * 126, "", "", "", ""])["semantic"] == " ".join(["a"] * 126)
    with pytest.raises(UserInputError, match="temporal is 129 tokens .*at most 128 tokens per block"):
        checked_cot(["", "a " * 127, "", "", ""])
    dense = "a, " * 150  # 449 characters (under the 600-character limit), 302 tokens
    with pytest.raises(UserInputError, match="semantic is 302 tokens"):
        actions.save_cot(clip, dense, *COT[1:])
    assert actions.store.get_clip(clip).edited is None


def test_plan_and_an_empty_semantic_render_ask_first_and_undo_brings_edits_back(actions, media, tmp_path):
    project, clip = project_with_clip(actions, tmp_path, media["mp4"])
    actions.save_cot(clip, *COT)
    asked = actions.plan(clip, *COT)  # the designer's own blocks: a question, nothing planned
    assert asked["plan_confirm_row"]["visible"] is True and "Replace your edited blocks" in asked["plan_confirm_text"]
    assert not any(k.startswith("cot_") for k in asked) and actions.store.get_clip(clip).planned is None
    with pytest.raises(UserInputError, match="has no planner"):  # the answer "yes" reaches the planner
        actions.plan(clip, *COT, confirmed=True)
    assert actions.keep_blocks()["plan_confirm_row"]["visible"] is False

    actions.save_cot(clip, "a glass door slides", *COT[1:])
    view = actions.undo_edit(clip)
    assert [view[f"cot_{f}"] for f in FIELDS] == list(COT) and "1 more step to undo" in view["message"]
    assert actions.undo_edit(clip)["cot_semantic"] == "" and actions.store.block_history(clip) == []

    empty = ("", *COT[1:])
    asked = actions.render_take(project, clip, *empty, *settings_values(steps=2))
    assert asked["render_confirm_row"]["visible"] is True and "Semantic block is empty" in asked["render_confirm_text"]
    assert actions.store.list_takes(clip) == []
    done = actions.render_take(project, clip, *empty, *settings_values(steps=2), confirmed=True)
    assert "Rendered take 1" in done["message"] and len(actions.store.list_takes(clip)) == 1


def test_text_for_markdown_is_shown_literally():
    assert as_text("<img src=x>") == "&lt;img src=x&gt;"
    assert as_text("**bold** [a](b) $$x$$") == r"\*\*bold\*\* \[a\]\(b\) \$\$x\$\$"
