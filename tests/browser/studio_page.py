"""The studio page as a browser test sees it: one method per thing a designer does."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

SLOW = 180_000  # ms: a render on a busy 2-core machine


class StudioPage:
    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        page.goto(url)
        page.wait_for_selector("#create-project")
        self.message = page.locator("#studio-message")

    def expect_message(self, text: str, timeout: float = 60_000) -> str:
        expect(self.message).to_contain_text(text, timeout=timeout)
        return self.message.inner_text()

    def expect_toast(self, text: str, timeout: float = 30_000) -> None:
        expect(self.page.locator(".toast-body").filter(has_text=text).first).to_be_visible(timeout=timeout)

    def type_into(self, elem_id: str, text: str) -> None:
        box = self.page.locator(f"#{elem_id} textarea, #{elem_id} input:not([type=file])").first
        box.fill(text)
        box.blur()

    def set_number(self, elem_id: str, value: float) -> None:
        box = self.page.locator(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.blur()

    def number(self, elem_id: str) -> float:
        return float(self.page.locator(f"#{elem_id} input[type=number]").input_value())

    def text_of(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id} textarea").input_value()

    def choose(self, elem_id: str, option: str | re.Pattern) -> None:
        self.page.locator(f"#{elem_id} input").click()
        self.page.get_by_role("option", name=option).click()

    def create_project(self, name: str) -> None:
        self.type_into("project-name", name)
        self.page.click("#create-project")
        self.expect_message(f"Created project “{name}”")

    def open_project(self, name: str) -> None:
        self.choose("project-pick", name)
        self.expect_message(f"Opened “{name}”")

    def upload(self, path: Path) -> None:
        self.page.set_input_files("#upload input[type=file]", str(path))

    def import_video(self, path: Path) -> str:
        self.upload(path)
        return self.expect_message(f"Imported {path.name}")

    def plan(self) -> None:
        self.page.click("#plan")
        self.expect_message("Planned", timeout=SLOW)

    def render(self, number: int) -> str:
        self.page.click("#render")
        return self.expect_message(f"Rendered take {number}:", timeout=SLOW)

    def takes(self, count: int | None = None) -> list[list[str]]:
        """The rows of the takes table (cells as shown), after waiting for ``count`` rows if given (the grid
        draws its rows a moment after the page has the data)."""
        rows = self.page.locator("#takes-table div[role=row][data-index]")  # the grid's rows (not the header)
        if count is not None:
            expect(rows).to_have_count(count)
        return [
            [c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(rows.count())
        ]

    def take_numbers(self, count: int | None = None) -> list[int]:
        return [int(re.sub(r"\D", "", r[0])) for r in self.takes(count) if r and r[0].startswith("Take")]
