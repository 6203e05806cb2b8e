"""The studio's project store: projects, clips and takes in SQLAlchemy, media in each project's folder,
staged writes that leave nothing behind on failure, and everything back after a reopen."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.projects import ClipMedia, ProjectNotFound, ProjectStore, clean_file_name, clean_project_name
from engine.errors import UserInputError

TYPES = (".mp4", ".mov", ".webm", ".mkv")


def fake_inspect(source: Path, folder: Path) -> ClipMedia:
    """Stands in for the video reader: writes an original-audio file like the real one does."""
    sf.write(folder / "original.wav", np.zeros((100, 2), np.float32), 44100, subtype="FLOAT")
    return ClipMedia(duration=2.0, fps=24.0, width=96, height=64, n_frames=48, audio_channels=2,
                     audio_rate=44100, original_audio="original.wav")  # fmt: skip


def refusing_inspect(source: Path, folder: Path) -> ClipMedia:
    (folder / "half-written.wav").write_bytes(b"RIFF")
    raise UserInputError(f"{source.name} is not a readable video")


def upload(tmp_path: Path, name: str = "shot 1.mp4", data: bytes = b"\x00video bytes") -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def files_under(root: Path) -> list[str]:
    """Every file below ``root`` except the database's own files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "studio.db" not in p.name)


def test_project_lifecycle_and_reopen(tmp_path):
    store = ProjectStore(tmp_path / "projects")
    a = store.create_project("  Car   chase ")
    b = store.create_project("Rain")
    assert a.name == "Car chase" and a.folder.is_dir() and a.folder.parent == store.root
    assert [p.name for p in store.list_projects()] == ["Car chase", "Rain"]
    store.rename_project(a.id, "Car chase, final")
    store.save_settings(b.id, {"steps": 8, "weights": {"semantic": 2.0}})
    store.close()

    again = ProjectStore(tmp_path / "projects")  # a restart: a new store on the same folder
    by_name = {p.name: p for p in again.list_projects()}
    assert set(by_name) == {"Car chase, final", "Rain"}
    assert by_name["Rain"].settings == {"steps": 8, "weights": {"semantic": 2.0}}
    again.delete_project(by_name["Rain"].id)
    assert [p.name for p in again.list_projects()] == ["Car chase, final"]
    assert not b.folder.exists()
    with pytest.raises(ProjectNotFound):
        again.get_project(b.id)


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "\n\t"])
def test_bad_project_names_are_refused(tmp_path, name):
    store = ProjectStore(tmp_path)
    with pytest.raises(UserInputError, match="name"):
        store.create_project(name)
    assert store.list_projects() == []


def test_names_are_unique_ignoring_case_and_never_paths(tmp_path):
    store = ProjectStore(tmp_path / "p")
    p = store.create_project("../../etc/passwd")
    assert p.folder.parent == store.root and len(p.folder.name) == 32  # a generated uid, not the name
    assert not (tmp_path / "etc").exists()
    store.create_project("Forest")
    with pytest.raises(UserInputError, match="already exists"):
        store.create_project("FOREST")
    with pytest.raises(UserInputError, match="already exists"):
        store.rename_project(p.id, "forest")
    assert clean_project_name("a\x00b\x07c") == "abc"
    assert clean_file_name("..\\..\\evil/../x.mp4") == "x.mp4"
    assert clean_file_name("/etc/passwd") == "passwd"


def test_import_copies_the_upload_into_the_project(tmp_path):
    store = ProjectStore(tmp_path / "p")
    project = store.create_project("Doors")
    src = upload(tmp_path, "../../door.MP4")
    clip = store.import_clip(project.id, src, src.name, fake_inspect, 10_000, TYPES)
    assert clip.name == "door.MP4" and clip.source.name == "source.mp4"
    assert clip.source.read_bytes() == src.read_bytes()
    assert clip.folder.parent == project.folder / "clips"
    assert clip.original_audio is not None and clip.original_audio.is_file()
    assert clip.duration == 2.0 and clip.media["fps"] == 24.0
    assert [c.id for c in store.list_clips(project.id)] == [clip.id]


@pytest.mark.parametrize(
    "name,data,limit,needle",
    [
        ("empty.mp4", b"", 10_000, "empty"),
        ("big.mp4", b"x" * 2000, 1000, "limit"),
        ("notes.txt", b"hello", 10_000, "not a video type"),
        ("clip.avi", b"RIFF", 10_000, "not a video type"),
    ],
)
def test_bad_uploads_leave_the_project_unchanged(tmp_path, name, data, limit, needle):
    store = ProjectStore(tmp_path / "p")
    project = store.create_project("Doors")
    before = files_under(store.root)
    with pytest.raises(UserInputError, match=needle):
        store.import_clip(project.id, upload(tmp_path, name, data), name, fake_inspect, limit, TYPES)
    assert store.list_clips(project.id) == [] and files_under(store.root) == before


def test_a_video_the_reader_refuses_leaves_nothing_behind(tmp_path):
    store = ProjectStore(tmp_path / "p")
    project = store.create_project("Doors")
    before = files_under(store.root)
    with pytest.raises(UserInputError, match="not a readable video"):
        fake = upload(tmp_path, "fake.mp4", b"text")
        store.import_clip(project.id, fake, "fake.mp4", refusing_inspect, 10_000, TYPES)
    assert store.list_clips(project.id) == [] and files_under(store.root) == before
    assert not list((project.folder / "clips").iterdir())  # no staging folder left either


def new_clip(store: ProjectStore, tmp_path: Path):
    project = store.create_project("Takes")
    src = upload(tmp_path)
    return store.import_clip(project.id, src, src.name, fake_inspect, 10_000, TYPES)


def add(store, clip, seed: int, total: float):
    audio = np.full((50, 2), seed / 1000, np.float32)
    scores = {"semantic": total, "temporal": total, "aesthetic": total, "spatial": total}
    return store.add_take(clip.id, audio, 44100, cot={"semantic": f"s{seed}"}, settings={"steps": 4}, seed=seed,
                          scores=scores, total=total)  # fmt: skip


def test_takes_are_numbered_sorted_rated_and_never_overwritten(tmp_path):
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    t1, t2, t3 = add(store, clip, 1, 0.2), add(store, clip, 2, 0.9), add(store, clip, 3, 0.5)
    assert [t.number for t in (t1, t2, t3)] == [1, 2, 3]
    assert len({t.path for t in (t1, t2, t3)}) == 3
    assert [t.number for t in store.list_takes(clip.id)] == [2, 3, 1]  # best total first
    store.rate_take(t1.id, 1)
    store.rate_take(t3.id, -1)
    with pytest.raises(UserInputError):
        store.rate_take(t2.id, 5)
    store.close()
    again = ProjectStore(tmp_path / "p")
    takes = {t.number: t for t in again.list_takes(clip.id)}
    assert (takes[1].rating, takes[2].rating, takes[3].rating) == (1, 0, -1)
    assert takes[1].label == "Take 1 ★" and takes[3].label == "Take 3 ✗"
    audio, sr = sf.read(takes[2].path, dtype="float32")
    assert sr == 44100 and np.allclose(audio, 0.002)
    assert takes[2].cot == {"semantic": "s2"} and takes[2].seed == 2


def test_takes_added_from_many_threads_get_distinct_numbers(tmp_path):
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    errors = []

    def worker(k: int) -> None:
        try:
            add(store, clip, k, k / 10)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    takes = store.list_takes(clip.id)
    assert sorted(t.number for t in takes) == list(range(1, 9))
    assert sorted(t.seed for t in takes) == list(range(8))


def test_cot_plan_and_edit_are_kept_apart(tmp_path):
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    planned = {"semantic": "a door", "temporal": "at 1 s", "aesthetic": "dry", "spatial": "left", "negative": ""}
    store.save_plan(clip.id, planned)
    store.save_edit(clip.id, planned | {"semantic": "a heavy oak door"})
    got = ProjectStore(tmp_path / "p").get_clip(clip.id)
    assert got.planned == planned and got.edited["semantic"] == "a heavy oak door"


def test_block_history_undoes_every_change_and_survives_a_reopen(tmp_path):
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    empty = {"semantic": "", "temporal": "", "aesthetic": "", "spatial": "", "negative": ""}
    mine = empty | {"semantic": "a heavy oak door"}
    planned = {"semantic": "a door", "temporal": "at 1 s", "aesthetic": "dry", "spatial": "left", "negative": ""}
    store.save_edit(clip.id, mine)
    store.save_edit(clip.id, mine)  # no change: no step
    store.save_plan(clip.id, planned)  # Plan replaces the designer's blocks: a step
    store.save_edit(clip.id, planned | {"spatial": "right"})
    assert store.block_history(clip.id) == [empty, mine, planned]
    store.close()

    again = ProjectStore(tmp_path / "p")  # a reload of the page, a restart of the server
    assert again.undo_edit(clip.id).edited == planned
    assert again.undo_edit(clip.id).edited == mine
    assert again.undo_edit(clip.id).edited == empty  # back to the empty blocks it was imported with
    assert again.block_history(clip.id) == [] and again.get_clip(clip.id).planned == planned
    with pytest.raises(UserInputError, match="nothing to undo"):
        again.undo_edit(clip.id)


def test_block_history_keeps_the_newest_steps_and_goes_with_its_clip(tmp_path, monkeypatch):
    import app.projects

    monkeypatch.setattr(app.projects, "MAX_HISTORY", 3)
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    for k in range(6):
        store.save_edit(clip.id, {"semantic": f"edit {k}"})
    assert [h.get("semantic") for h in store.block_history(clip.id)] == ["edit 2", "edit 3", "edit 4"]
    store.delete_project(clip.project_id)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM block_edits").scalar() == 0


def test_long_file_names_are_shortened_around_their_extension(tmp_path):
    name = "a" * 100 + "b" * 96 + ".MP4"  # 200 characters
    short = clean_file_name(name)
    assert len(short) == 120 and short == "a" * 58 + "…" + "b" * 57 + ".MP4"
    assert clean_file_name("x" * 200) == "x" * 60 + "…" + "x" * 59  # no extension: still 120
    store = ProjectStore(tmp_path / "p")
    project = store.create_project("Long names")
    clip = store.import_clip(project.id, upload(tmp_path, name), name, fake_inspect, 10_000, TYPES)
    assert clip.name == short and clip.source.name == "source.mp4"


def test_exports_are_staged_and_get_new_folders(tmp_path):
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    take = add(store, clip, 1, 0.5)

    def write(folder: Path) -> dict:
        (folder / "a.txt").write_text("done")
        return {"ok": True}

    first, result = store.write_export(take, "take1", write)
    second, _ = store.write_export(take, "take1", write)
    assert result == {"ok": True} and first != second and (first / "a.txt").read_text() == "done"

    def failing(folder: Path) -> dict:
        (folder / "half.wav").write_bytes(b"RI")
        raise UserInputError("cannot copy the video stream")

    with pytest.raises(UserInputError):
        store.write_export(take, "take1", failing)
    assert sorted(p.name for p in (clip.folder / "exports").iterdir()) == sorted([first.name, second.name])


def test_leftovers_of_interrupted_writes_are_removed_on_start(tmp_path):
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    (clip.folder.parent / ".staging-dead").mkdir()
    (clip.folder / "takes").mkdir(exist_ok=True)
    (clip.folder / "takes" / ".x.wav.abc.tmp.wav").write_bytes(b"half")
    (store.root / ".trash-old").mkdir()
    store.close()
    ProjectStore(tmp_path / "p")
    assert not (clip.folder.parent / ".staging-dead").exists()
    assert not (clip.folder / "takes" / ".x.wav.abc.tmp.wav").exists()
    assert not (store.root / ".trash-old").exists()


def test_any_database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'studio.sqlite'}"
    (tmp_path / "elsewhere").mkdir()
    store = ProjectStore(tmp_path / "media", url)
    store.create_project("Remote")
    assert (tmp_path / "elsewhere" / "studio.sqlite").is_file()
    assert not (tmp_path / "media" / "studio.db").exists()
    assert [p.name for p in ProjectStore(tmp_path / "media", url).list_projects()] == ["Remote"]


def test_the_studio_and_the_command_line_write_a_take_identically(tmp_path):
    """One write path: the same rendered audio stored as a studio take and written by ``render`` gives the same
    samples, both level-safe (a take rendered too hot comes out under -1 dBTP, its level in the take's info)."""
    from engine.commands.render import _write_take
    from engine.cot import Cot
    from engine.level import LevelSettings

    t = np.arange(44100) / 44100
    hot = np.stack([1.3 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.float32)
    store = ProjectStore(tmp_path / "p")
    clip = new_clip(store, tmp_path)
    take = store.add_take(clip.id, hot, 44100, cot={"semantic": "x"}, settings={}, seed=1, scores={}, total=0.0)
    cot = Cot(semantic="x", temporal="", aesthetic="", spatial="")
    paths, level = _write_take(tmp_path, tmp_path / "shot.mp4", hot, 44100, cot, False, LevelSettings())
    studio, sr = sf.read(take.path, dtype="float64")
    cli, sr_cli = sf.read(paths["wav"], dtype="float64")
    assert sr == sr_cli == 44100 and sf.info(take.path).subtype == sf.info(paths["wav"]).subtype == "PCM_24"
    np.testing.assert_array_equal(studio, cli)
    assert np.abs(cli).max() < 10 ** (-1 / 20) and level["true_peak_dbtp"] <= -1.0
    assert take.info["level"] == level
