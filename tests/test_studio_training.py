"""The studio's training runs without a browser: videos and sounds added to a project, a fine-tune in the
background with its curves, the model registered and rendering takes, cancel and resume, preference pairs
from star and reject ratings, Flow-DPO on them, a restart, and bad settings refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.settings import StudioSettings
from app.studio_actions import StudioActions
from app.train_actions import STUDIO_MODEL, TRAIN_FIELDS
from app.train_runs import TrainingManager, checked_config, project_pairs
from engine.bundle import load_bundle
from engine.errors import UserInputError
from tests import train_data
from tests.test_studio_actions import settings_values, upload

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"steps": 4, "lr": 1e-2, "lora_rank": 2, "held_out": 0.3, "bench_clips": 0, "batch": 2, "group": 2, "beta": 1.0}
SMALL |= {"replay": 0, "distill": 0.0}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-train")
    model = train_data.model_folder(root, with_planner=True)
    metas = train_data.videos(root / "videos", 2)
    sounds = train_data.sounds(root / "sounds")
    return {"root": root, "model": model, "videos": [root / "videos" / f"{m['name']}.mp4" for m in metas]} | sounds


@pytest.fixture
def studio(tmp_path, media):
    settings = StudioSettings(projects_dir=tmp_path / "projects", model=str(media["model"]))
    actions = StudioActions(settings)
    project = actions.create_project("Train me")["project"]
    return actions, project


def values(**kw) -> list:
    return [(SMALL | kw)[k] for k in TRAIN_FIELDS]


def add_data(actions: StudioActions, project: int, media: dict, tmp_path: Path) -> dict:
    view = actions.train.add_videos(project, [upload(tmp_path, v) for v in media["videos"]])
    assert view["message"].startswith("✓ Added 2 clip(s)")
    files = [upload(tmp_path, media[k]) for k in ("door", "listed", "broken")]
    return actions.train.add_sounds(project, files, upload(tmp_path, media["csv"]))


def test_a_fine_tune_from_the_page_registers_a_model_that_renders_takes(studio, media, tmp_path):
    actions, project = studio
    view = add_data(actions, project, media, tmp_path)
    assert "Added 2 sound(s)" in view["message"] and "skipped broken.wav" in view["message"]
    assert [r[1] for r in view["sounds_table"]] == ["metal door slam", "squeaky hinge, creak"]
    assert "**2** video clip(s)" in view["train_summary"] and "**2** library sound(s)" in view["train_summary"]
    clips = actions.store.list_clips(project)
    assert all(c.planned for c in clips)  # planned on import: reviewable in the Studio page
    started = actions.train.start(project, "finetune", *values())
    run_id = started["train_run"]["value"]
    assert actions.train.manager.wait(run_id, 120)
    run = actions.store.get_run(run_id)
    assert run.status == "finished" and run.offered and run.result["data"]["windows"] >= 4
    assert (run.folder / "model.json").is_file() and run.folder.is_relative_to(actions.store.root)
    view = actions.train.view(project, run_id)
    assert "finished" in view["train_progress"] and "FoleyBench check off" in view["train_progress"]
    assert view["train_plot"] is not None and view["runs_table"][0][:2] == ["LoRA fine-tune 1", "finished"]
    choices = dict((v, k) for k, v in view["model_pick"]["choices"])
    assert choices[f"run-{run_id}"] == "LoRA fine-tune 1 (trained)" and STUDIO_MODEL in choices
    actions.train.choose_model(project, f"run-{run_id}")
    clip = clips[0]
    taken = actions.render_take(project, clip.id, *clip.planned.values(), *settings_values(steps=2))
    take = actions.store.list_takes(clip.id)[0]
    assert "Rendered take 1" in taken["message"] and take.settings["model"] == "LoRA fine-tune 1"
    assert load_bundle(run.folder).name == run.folder.name and not load_bundle(media["model"]).generator.training


def test_a_fine_tune_replays_foleyworld_clips_beside_the_projects_data(studio, media, tmp_path):
    import json

    actions, project = studio
    add_data(actions, project, media, tmp_path)
    started = actions.train.start(project, "finetune", *values(replay=1, steps=1, distill=1.0))
    run_id = started["train_run"]["value"]
    assert actions.train.manager.wait(run_id, 120)
    run = actions.store.get_run(run_id)
    assert run.status == "finished", run.result
    sources = json.loads((run.folder / "dataset" / "dataset.json").read_text())["sources"]
    replayed = [s for s in sources if s["cot_source"] == "foleyworld"]
    assert len(replayed) == 1 and len(sources) == 5  # 2 clips, 2 sounds, 1 replayed FoleyWorld clip
    assert (run.folder / "replay" / "train_000000.mp4").is_file()
    assert run.config["distill"] == 1.0
    logged = [json.loads(x) for x in (run.folder / "train_log.jsonl").read_text().splitlines()]
    assert [e["anchored_rows"] for e in logged if e["phase"] == "train"]  # the replayed rows held to the start model
    with pytest.raises(UserInputError, match="replay must be between 0 and 2000"):
        checked_config("finetune", {"replay": -1})


def test_cancel_then_resume_finishes_the_run(studio, media, tmp_path):
    actions, project = studio
    add_data(actions, project, media, tmp_path)
    run_id = actions.train.start(project, "finetune", *values(steps=20))["train_run"]["value"]
    actions.train.cancel(project, run_id)
    assert actions.train.manager.wait(run_id, 120)
    run = actions.store.get_run(run_id)
    assert run.status == "stopped" and run.result["step"] < 20
    with pytest.raises(UserInputError, match="no training run"):
        actions.train.cancel(project, run_id)
    assert actions.train.view(None)["model_pick"]["choices"] == []
    seen = actions.train.view(project, run_id)["train_seen"]
    assert actions.train.poll(project, run_id, seen) == {}  # nothing moved: nothing to redraw
    actions.train.resume(project, run_id)
    assert actions.train.manager.wait(run_id, 120)
    assert actions.store.get_run(run_id).status == "finished" and actions.train.poll(project, run_id, seen)
    with pytest.raises(UserInputError, match="has finished"):
        actions.train.resume(project, run_id)


def test_fast_grpo_from_the_page_uses_the_projects_weights(studio, media, tmp_path):
    actions, project = studio
    add_data(actions, project, media, tmp_path)
    actions.save_settings(project, *settings_values(weights=(1.0, 0.0, 0.0, 0.5)))
    run_id = actions.train.start(project, "grpo", *values(steps=1))["train_run"]["value"]
    assert actions.train.manager.wait(run_id, 120)
    run = actions.store.get_run(run_id)
    assert run.status == "finished" and run.offered, run.result
    assert run.config["weights"] == {"semantic": 1.0, "temporal": 0.0, "aesthetic": 0.0, "spatial": 0.5}
    assert any("reward_weighted" in h for h in actions.train.manager.history(run))


def test_ratings_become_preference_pairs_and_train_flow_dpo(studio, media, tmp_path):
    actions, project = studio
    with pytest.raises(UserInputError, match="star and reject"):
        actions.train.start(project, "dpo", *values())
    view = actions.import_video(project, upload(tmp_path, media["videos"][0]))
    clip = actions.store.get_clip(view["clip"])
    cot = ("a ball knocks on wood", "two knocks", "dry", "left", "")
    for seed in (1, 2, 3):
        actions.render_take(project, clip.id, *cot, *settings_values(seed=seed, steps=2))
    other = ("a ball knocks on wood", "two knocks", "dry", "right", "")  # another CoT: not the same condition
    actions.render_take(project, clip.id, *other, *settings_values(seed=4, steps=2))
    takes = {t.number: t for t in actions.store.list_takes(clip.id)}
    for number, rating in ((1, 1), (2, -1), (3, -1), (4, -1)):
        actions.store.rate_take(takes[number].id, rating)
    pairs = project_pairs(actions.store, project)
    assert [(Path(p.winner).name, Path(p.loser).name) for p in pairs] == [
        (takes[1].path.name, takes[2].path.name),
        (takes[1].path.name, takes[3].path.name),
    ]
    run_id = actions.train.start(project, "dpo", *values(steps=2, held_out=0.0))["train_run"]["value"]
    assert actions.train.manager.wait(run_id, 120)
    run = actions.store.get_run(run_id)
    assert run.status == "finished" and run.result["data"] == {"pairs": 2} and run.offered


def test_train_dpo_command_reads_a_projects_ratings(studio, media, tmp_path, monkeypatch, capsys):
    import json

    from tests.test_pipeline import _cli

    actions, project = studio
    clip = actions.store.get_clip(actions.import_video(project, upload(tmp_path, media["videos"][1]))["clip"])
    cot = ("a ball knocks on wood", "two knocks", "dry", "left", "")
    for seed in (1, 2):
        actions.render_take(project, clip.id, *cot, *settings_values(seed=seed, steps=2))
    first, second = sorted(actions.store.list_takes(clip.id), key=lambda t: t.number)
    actions.store.rate_take(first.id, 1)
    actions.store.rate_take(second.id, -1)
    monkeypatch.setenv("FOLEY_PROJECTS", str(actions.settings.projects_dir))
    args = ["train", "dpo", "--model", media["model"], "--steps", "1", "--batch", "1", "--bench-clips", "0"]
    rc, out, err = _cli(*args, "--project", "train me", "--out", tmp_path / "dpo", capsys=capsys)
    assert rc == 0, err
    assert json.loads(out)["method"] == "flow-dpo" and (tmp_path / "dpo" / "model.json").is_file()
    pairs = json.loads((tmp_path / "dpo" / "pairs_source.json").read_text())["pairs"]
    assert [(p["winner"], p["loser"]) for p in pairs] == [(str(first.path), str(second.path))]
    rc, out, err = _cli(*args, "--project", "nobody", "--out", tmp_path / "x", capsys=capsys)
    assert rc == 2 and "no project named 'nobody'" in err


def test_an_interrupted_run_is_resumable_after_a_restart_and_bad_settings_are_refused(studio, media, tmp_path):
    actions, project = studio
    run = actions.store.create_run(project, "finetune", checked_config("finetune", SMALL))
    TrainingManager(actions.store, str(media["model"]))  # a new server on the same store
    assert actions.store.get_run(run.id).status == "stopped"
    for bad, match in (
        ({"bench_clips": 1}, "at least 2"),
        ({"lr": -1.0}, "learning rate|lr"),
        ({"steps": 2.5}, "whole"),
    ):
        with pytest.raises(UserInputError, match=match):
            checked_config("finetune", bad)
    with pytest.raises(UserInputError, match="add video clips"):
        actions.train.start(project, "finetune", *values())
    shutil.rmtree(run.folder)
    actions.confirm_delete(project, actions.ask_delete(project)["delete_token"])
    assert actions.store.runs_with_status("stopped") == []  # the project's runs went with it
