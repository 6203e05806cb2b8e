"""The Train page in a real headless browser (issue 7, "Done when" 4): a small LoRA fine-tune started from
the page on a tiny model and two clips, its progress and curves watched, the model registered, and a take
rendered with it from the Studio page. The server is ``python launch.py`` with FOLEY_MODEL set to the tiny
test bundle (with the shipped planner), so the run takes seconds."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests import train_data
from tests.browser.conftest import Server
from tests.browser.studio_page import SLOW, StudioPage

STEPS = 100  # tiny steps: long enough to be seen running, a few seconds in all


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("train-studio")
    model = train_data.model_folder(home, with_planner=True)
    old = os.environ.get("FOLEY_MODEL")
    os.environ["FOLEY_MODEL"] = str(model)
    try:
        srv = Server(home).start()
    finally:
        os.environ.pop("FOLEY_MODEL") if old is None else os.environ.__setitem__("FOLEY_MODEL", old)
    yield srv
    srv.stop()


@pytest.mark.slow
def test_a_fine_tune_from_the_train_page_renders_with_the_new_model(tiny_server, new_context, pages, tmp_path):
    metas = train_data.videos(tmp_path / "videos", 2)
    videos = [str(tmp_path / "videos" / f"{m['name']}.mp4") for m in metas]
    page = new_context().new_page()
    pages.append(page)
    s = StudioPage(page, tiny_server.url)
    s.create_project("House sounds")
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-summary")).to_contain_text("0 video clip(s)")
    page.set_input_files("#train-videos input[type=file]", videos)
    s.expect_message("Added 2 clip(s) to train on", timeout=SLOW)
    expect(page.locator("#train-summary")).to_contain_text("2 video clip(s) with their own audio")
    for elem_id, value in (("t-steps", STEPS), ("t-lr", 0.01), ("t-lora-rank", 2), ("t-bench-clips", 0)):
        s.set_number(elem_id, value)
    s.set_number("t-batch", 2)
    s.set_number("t-replay", 0)
    page.click("#train-start")
    s.expect_message("Started LoRA fine-tune 1")
    progress = page.locator("#train-progress")
    # the step count is shown while it trains and stays in the finished line; a fast run can stop early
    # between two polls, so either state is accepted here
    expect(progress).to_contain_text(re.compile(rf"(training:|finished ·) step \d+/{STEPS}"), timeout=SLOW)
    expect(progress).to_contain_text("finished", timeout=SLOW)  # all steps, or early stopping on the held-out loss
    expect(progress).to_contain_text("offered for rendering")
    expect(page.locator("#train-plot img")).to_be_visible()
    expect(page.locator("#runs-table")).to_contain_text("LoRA fine-tune 1")

    page.get_by_role("tab", name="Studio").click()
    s.choose("render-model", "LoRA fine-tune 1 (trained)")
    s.expect_message("now render with the chosen model")
    s.set_number("steps", 2)
    s.render(1)
    expect(page.locator("#take-info")).to_contain_text("model LoRA fine-tune 1")
