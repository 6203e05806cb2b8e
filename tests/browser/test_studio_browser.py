"""The studio in a real headless browser (issue 6, "Done when" 2-5): the whole flow from a new project to
exported files and a restart, two sessions rendering at the same time, bad input, and cancel; and (issue 37)
the page never loses typing: Plan and an empty Semantic block ask first, Undo, late views, long file names,
names shown as text.

The server is ``python launch.py`` with the shipped default model; renders use 4 sampler steps.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from app.projects import ProjectStore
from engine.bundle import load_bundle
from engine.pipeline import RenderSettings, prepare_video, render
from tests.browser.conftest import ROOT, UPLOAD_LIMIT_MB
from tests.browser.studio_page import SLOW, StudioPage
from tests.media_files import write_video

STEPS = 4
MODEL = os.environ.get("FOLEY_MODEL", "default")  # what the server renders with (it inherits the environment)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A FoleyWorld clip (a visible sound source and its sound), other videos, and bad files."""
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip, write_clip

    root = tmp_path_factory.mktemp("browser-media")
    meta = write_clip(make_clip("test-single", 3, WorldConfig(duration=2.5)), root)
    bell = root / "bell tower.mp4"
    (root / f"{meta['name']}.mp4").rename(bell)
    files = {"bell": bell, "street": root / "street.mov", "rain": root / "rain.webm"}
    write_video(files["street"], fmt="mov", vcodec="libx264", fps=30.0, seconds=2.0, acodec="aac")
    write_video(files["rain"], fmt="webm", vcodec="libvpx-vp9", fps=25.0, seconds=2.0)
    files["text"] = root / "notes.mp4"
    files["text"].write_text("this is a text file, not a video\n" * 50)
    files["empty"] = root / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["huge"] = root / "huge.mp4"
    files["huge"].write_bytes(b"\x00" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 4096))
    files["wrong"] = root / "notes.txt"
    files["wrong"].write_text("hello")
    return files


def open_studio(new_context, pages, server, **kw) -> StudioPage:
    page = new_context(**kw).new_page()
    pages.append(page)
    return StudioPage(page, server.url)


def project_state(server, name: str) -> dict:
    """What the store holds of project ``name`` (read by a second store on the same folder), and its files."""
    store = ProjectStore(server.projects)
    try:
        (project,) = [p for p in store.list_projects() if p.name == name]
        clips = store.list_clips(project.id)
        takes = [t for c in clips for t in store.list_takes(c.id)]
        files = sorted(str(p.relative_to(project.folder)) for p in project.folder.rglob("*") if p.is_file())
        return {
            "project": project,
            "settings": project.settings,
            "clips": [(c.name, c.edited, c.planned) for c in clips],
            "clip_objects": clips,
            "takes": takes,
            "files": files,
        }
    finally:
        store.close()


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.slow
def test_from_a_new_project_to_exported_files_and_back_after_a_restart(server, new_context, pages, media):
    s = open_studio(new_context, pages, server)
    s.create_project("Bell tower")
    info = s.import_video(media["bell"])
    assert "2.500 s" in info and "24.000 fps" in info and "96×96" in info and "2 ch audio" in info
    expect(s.page.locator("#video video")).to_have_count(1)
    expect(s.page.locator("#original [data-testid='waveform-Original audio']")).to_be_visible()
    edited = plan_and_edit(s)
    render_two_takes(s)
    starred = rate_takes(s)
    state = export_and_check(s, server)
    takes = {t.number: t for t in state["takes"]}
    assert takes[starred].rating == 1 and takes[3 - starred].rating == 0
    assert takes[1].seed == 5 and takes[2].seed != 5  # the lock, then a fresh seed
    assert all(t.cot["semantic"] == edited and t.settings["steps"] == STEPS for t in takes.values())
    save_docs_screenshot(s)

    server.restart()
    s2 = open_studio(new_context, pages, server)
    s2.open_project("Bell tower")
    assert s2.text_of("cot-semantic") == edited
    assert {r[0]: r[1] for r in s2.takes(2)} == {f"Take {starred}": "★", f"Take {3 - starred}": ""}
    assert s2.number("steps") == STEPS
    expect(s2.page.locator("#media-info")).to_contain_text("2.500 s")
    expect(s2.page.locator("#spectrograms img")).to_be_visible()
    after = project_state(server, "Bell tower")
    assert after["files"] == state["files"] and after["clips"] == state["clips"]


def plan_and_edit(s: StudioPage) -> str:
    """Plan, edit the semantic block, reset it to the planner's text, edit it again: -> the edited text."""
    s.plan()
    planned = s.text_of("cot-semantic")
    assert planned and s.text_of("cot-temporal") and s.text_of("cot-spatial")
    s.type_into("cot-semantic", "a small brass bell")
    s.expect_message("Blocks saved")
    s.page.click("#reset-semantic")
    s.expect_message("Semantic is the planner's text again")
    assert s.text_of("cot-semantic") == planned
    edited = f"{planned} A heavy bronze bell, struck hard."
    s.type_into("cot-semantic", edited)
    s.expect_message("Blocks saved")
    return edited


def render_two_takes(s: StudioPage) -> None:
    """Take 1 with the seed locked at 5, take 2 unlocked; both scored, the table best first, plots shown."""
    s.set_number("steps", STEPS)
    s.set_number("seed", 5)
    s.page.locator("#seed-lock input").check()
    s.render(1)
    s.page.locator("#seed-lock input").uncheck()  # the second take gets a new seed
    s.render(2)
    rows = s.takes(2)
    assert sorted(s.take_numbers(2)) == [1, 2]
    totals = [float(r[2]) for r in rows]
    assert totals == sorted(totals, reverse=True)  # best weighted total first
    assert all(0.0 <= float(v) <= 1.0 for r in rows for v in r[3:7])  # the four scores
    expect(s.page.locator("#spectrograms img")).to_be_visible()
    expect(s.page.locator("#positions img")).to_be_visible()
    expect(s.page.locator("#take-info")).to_contain_text("semantic")


def rate_takes(s: StudioPage) -> int:
    """Star the chosen take; pick the other in the table, reject it and clear that again: -> the starred one."""
    s.page.click("#star")
    starred = int(re.search(r"Starred take (\d+)", s.expect_message("Starred take")).group(1))
    other = 3 - starred
    assert {r[0]: r[1] for r in s.takes()} == {f"Take {starred}": "★", f"Take {other}": ""}
    row = next(i for i, r in enumerate(s.takes()) if r[0] == f"Take {other}")
    s.page.locator(f"#takes-table [role=gridcell][data-row='{row}'][data-col='0']").click()  # pick it in the table
    expect(s.page.locator("#take-info")).to_contain_text(f"Take {other}")
    s.page.click("#reject")
    s.expect_message(f"Rejected take {other}.")
    s.page.click("#clear-rating")
    s.expect_message(f"Cleared the rating of take {other}.")
    s.choose("take-pick", re.compile(f"^Take {starred} ★"))
    expect(s.page.locator("#take-info")).to_contain_text(f"Take {starred} ★")
    return starred


def export_and_check(s: StudioPage, server) -> dict:
    """Export the starred take as WAV and muxed MP4 and check the files: -> the project's state."""
    s.page.get_by_label("MP4 (video copied + take)").check()
    s.page.click("#export")
    s.expect_message("Exported take", timeout=SLOW)
    expect(s.page.locator("#exports")).to_contain_text(".wav")
    expect(s.page.locator("#exports")).to_contain_text(".mp4")
    state = project_state(server, "Bell tower")
    clip = state["clip_objects"][0]
    export = sorted((clip.folder / "exports").iterdir())[-1]
    info = sf.info(next(export.glob("*.wav")))
    assert (info.samplerate, info.channels, info.subtype) == (48000, 2, "PCM_24")
    assert info.frames == round(clip.duration * 48000) == 120000  # exactly the picture's length
    mp4 = next(export.glob("*.mp4"))
    assert video_packets(mp4) == video_packets(clip.source)  # the video stream copied, not re-encoded
    with av.open(str(mp4)) as c:
        assert c.streams.audio[0].codec_context.sample_rate == 48000
    return state


def save_docs_screenshot(s: StudioPage) -> None:
    """The README's picture of the studio, 960 px wide in 96 colours (about 200 KB): written to
    docs/studio.png when it is missing or when FOLEY_UPDATE_SCREENSHOT=1, else to runs/screenshots/ (so
    that a test run does not change a tracked file)."""
    import io

    from PIL import Image

    docs = ROOT / "docs" / "studio.png"
    update = not docs.exists() or os.environ.get("FOLEY_UPDATE_SCREENSHOT") == "1"
    target = docs if update else ROOT / "runs" / "screenshots" / "studio.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    s.page.evaluate("window.scrollTo(0, 0)")
    shot = Image.open(io.BytesIO(s.page.screenshot(full_page=True, type="png"))).convert("RGB")
    small = shot.resize((960, round(shot.height * 960 / shot.width)), Image.Resampling.LANCZOS)
    small.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)


@pytest.mark.slow
def test_two_sessions_rendering_at_once_get_their_own_takes(server, new_context, pages, media):
    a = open_studio(new_context, pages, server)
    b = open_studio(new_context, pages, server)
    jobs = {"A": (a, media["bell"], "a bell tolls", 111), "B": (b, media["street"], "a car passes by", 222)}
    for name, (s, video, semantic, seed) in jobs.items():
        s.create_project(f"Session {name}")
        s.import_video(video)
        for block in ("semantic", "temporal", "aesthetic", "spatial"):
            s.type_into(f"cot-{block}", semantic if block == "semantic" else "")
        s.set_number("steps", STEPS)
        s.set_number("seed", seed)
        s.page.locator("#seed-lock input").check()
    a.page.click("#render")  # both at once: the server renders two sessions side by side
    b.page.click("#render")
    for s, *_ in jobs.values():
        s.expect_message("Rendered take 1:", timeout=SLOW)

    bundle = load_bundle(MODEL)
    alone = {}
    for name, (s, _video, semantic, seed) in jobs.items():
        expect(s.page.locator("#take-info")).to_contain_text(f"seed {seed}")
        expect(s.page.locator("#take-info")).to_contain_text(semantic)
        (take,) = project_state(server, f"Session {name}")["takes"]
        clip = project_state(server, f"Session {name}")["clip_objects"][0]
        assert take.seed == seed and take.cot["semantic"] == semantic
        got, _ = sf.read(take.path, dtype="float32")
        alone[name] = render(prepare_video(clip.source, bundle), take.cot, bundle, RenderSettings(seed, STEPS))
        np.testing.assert_allclose(got, alone[name], atol=1e-3)  # its own CoT, seed and video
    assert alone["A"].shape != alone["B"].shape or not np.allclose(alone["A"], alone["B"], atol=1e-3)


def test_bad_input_gets_a_message_and_leaves_the_project_unchanged(server, new_context, pages, media):
    s = open_studio(new_context, pages, server)
    s.create_project("Bad input")
    s.import_video(media["rain"])
    s.type_into("cot-semantic", "rain on a tin roof")
    s.expect_message("Blocks saved")
    before = project_state(server, "Bad input")

    s.upload(media["text"])
    s.expect_message("notes.mp4 is not a readable video")
    s.upload(media["empty"])
    s.expect_message("empty (0 bytes)")
    s.upload(media["huge"])
    s.expect_toast("maximum allowed size")
    s.upload(media["wrong"])
    s.expect_toast("Invalid file type")

    s.type_into("cot-semantic", "drops " * 120)  # 719 characters, the limit is 600
    s.expect_message("block too long: semantic has 719 characters")
    s.page.click("#render")
    s.expect_message("block too long")

    s.type_into("cot-semantic", "rain on a tin roof")
    s.set_number("w-temporal", -0.5)
    s.expect_message("the temporal weight is -0.5: weights must be 0 or more")
    expect(s.page.locator("#w-temporal input[type=number]")).to_have_value("0.6")

    after = project_state(server, "Bad input")
    for key in ("settings", "clips", "files"):
        assert after[key] == before[key], key
    assert after["takes"] == []


def test_a_render_can_be_cancelled_and_leaves_nothing_behind(server, new_context, pages, media):
    s = open_studio(new_context, pages, server)
    s.create_project("Cancel")
    s.import_video(media["street"])
    s.set_number("steps", 100)
    s.set_number("candidates", 8)  # 800 sampler steps: long enough to cancel on a fast machine too
    before = project_state(server, "Cancel")
    s.page.click("#render")
    expect(s.page.locator("#confirm-render")).to_contain_text("Semantic block is empty")  # no block written
    s.page.click("#render-yes")
    expect(s.page.get_by_text("rendering 8 candidates: step").first).to_be_visible(timeout=SLOW)
    s.page.click("#cancel")
    s.expect_message("Render cancelled; no take was written.", timeout=SLOW)
    after = project_state(server, "Cancel")
    assert after["takes"] == [] and after["files"] == before["files"]
    clip = after["clip_objects"][0]
    assert not any(p.name.startswith(".") for p in clip.folder.rglob("*"))  # no half-written file


def test_the_server_serves_only_its_own_media(server):
    """A path outside the projects folder is not served (Gradio's allowed paths)."""
    import urllib.error
    import urllib.request

    for probe in ("/etc/passwd", str(ROOT / "launch.py")):
        url = f"{server.url}gradio_api/file={probe}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status in (403, 404), (probe, status)


def test_password(tmp_path, new_context, pages):
    """With FOLEY_PASSWORD set the studio asks for it before showing anything."""
    from tests.browser.conftest import Server

    srv = Server(tmp_path)
    os.environ["FOLEY_PASSWORD"] = "open sesame"
    try:
        srv.start()
    finally:
        del os.environ["FOLEY_PASSWORD"]
    try:
        page = new_context().new_page()
        pages.append(page)
        page.goto(srv.url)
        expect(page.get_by_text("Foley Studio: enter the studio's password")).to_be_visible(timeout=30_000)
        expect(page.locator("#create-project")).to_have_count(0)
        page.get_by_label("username").fill("studio")
        page.get_by_label("password").fill("open sesame")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#create-project", timeout=30_000)
    finally:
        srv.stop()
        shutil.rmtree(tmp_path / "projects", ignore_errors=True)


def test_rename_and_delete_with_confirmation(server, new_context, pages, media):
    s = open_studio(new_context, pages, server)
    s.create_project("Scratch")
    s.import_video(media["rain"])
    s.type_into("project-name", "Scratch, take two")
    s.page.click("#rename-project")
    s.expect_message("Renamed to “Scratch, take two”")
    folder = project_state(server, "Scratch, take two")["project"].folder
    s.page.click("#delete-project")
    expect(s.page.locator("#confirm-delete")).to_contain_text("Delete “Scratch, take two” with its 1 clip(s)")
    s.page.click("#confirm-no")
    s.expect_message("Nothing was deleted.")
    expect(s.page.locator("#confirm-delete")).to_be_hidden()
    assert folder.is_dir()
    s.page.click("#delete-project")
    s.page.click("#confirm-yes")
    s.expect_message("Deleted “Scratch, take two”.")
    assert not folder.exists()
    s.page.locator("#project-pick input").click()
    expect(s.page.get_by_role("option", name="Scratch, take two")).to_have_count(0)


def test_the_page_never_loses_typing_and_shows_names_as_text(server, new_context, pages, media, tmp_path):
    s = open_studio(new_context, pages, server)
    name = "<img src=x>"
    s.create_project(name)  # the message shows the name as text: no image element, no fetch of "x"
    expect(s.page.locator("#studio-message img, #project-pick img")).to_have_count(0)
    expect(s.page.locator("#project-pick input")).to_have_value(name)
    long = tmp_path / f"{'a' * 100} {'b' * 95}.mp4"  # 200 characters
    shutil.copyfile(media["bell"], long)
    s.upload(long)
    s.expect_message(f"Imported {'a' * 58}…{'b' * 57}.mp4")  # shortened around its extension

    s.plan()  # empty blocks: no question
    planned = {b: s.text_of(f"cot-{b}") for b in ("semantic", "temporal")}
    s.type_into("cot-temporal", "old temporal")
    s.expect_message("Blocks saved")
    s.type_into("cot-semantic", "my own bell")
    s.expect_message("Blocks saved")
    s.page.click("#plan")  # edited blocks: Plan asks first
    expect(s.page.locator("#confirm-plan")).to_contain_text("Replace your edited blocks")
    s.page.click("#plan-no")
    s.expect_message("Nothing was planned")
    assert s.text_of("cot-semantic") == "my own bell"
    s.page.click("#plan")
    s.page.click("#plan-yes")
    s.expect_message("Undo brings your blocks back", timeout=SLOW)
    assert s.text_of("cot-semantic") == planned["semantic"]
    s.page.click("#undo-blocks")  # Undo restores the edit Plan replaced
    s.expect_message("Undid the last change of the blocks")
    assert s.text_of("cot-semantic") == "my own bell" and s.text_of("cot-temporal") == "old temporal"

    # a late view: the plan's answer arrives after the designer typed (its request is held until then)
    s.page.click("#plan")
    expect(s.page.locator("#confirm-plan")).to_be_visible()
    held = []  # the first request to the queue (the plan's) waits here; any other goes on
    s.page.route("**/gradio_api/queue/join*", lambda route: route.continue_() if held else held.append(route))
    s.page.click("#plan-yes")
    while not held:
        s.page.wait_for_timeout(50)
    s.page.locator("#cot-semantic textarea").fill("typed while planning")  # still in the field: no blur
    held[0].continue_()
    expect(s.page.locator("#cot-temporal textarea")).to_have_value(planned["temporal"], timeout=SLOW)
    assert s.text_of("cot-semantic") == "typed while planning"  # the typing stays; the untouched block is planned
    s.expect_message("Blocks saved")  # and what was kept is stored
    assert project_state(server, name)["clips"][0][1]["semantic"] == "typed while planning"
    s.page.unroute("**/gradio_api/queue/join*")

    s.type_into("cot-semantic", "")
    s.expect_message("Blocks saved")
    s.page.click("#render")  # an empty Semantic block: Render asks first
    expect(s.page.locator("#confirm-render")).to_contain_text("Semantic block is empty")
    s.page.click("#render-no")
    s.expect_message("Nothing was rendered")
    assert project_state(server, name)["takes"] == []
