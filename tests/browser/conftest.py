"""Browser tests of the studio: a real server (``python launch.py``) driven by Debian's chromium through
Playwright. Skipped when chromium or Playwright is missing (``.ci/run`` installs both).

A screenshot of the page is saved under ``runs/browser-failures/`` whenever a browser test fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAILURES = ROOT / "runs" / "browser-failures"
UPLOAD_LIMIT_MB = 2  # the test server's FOLEY_MAX_UPLOAD_MB

try:
    import playwright.sync_api  # noqa: F401

    HAVE_PLAYWRIGHT = True
except ImportError:
    HAVE_PLAYWRIGHT = False

pytestmark = pytest.mark.skipif(
    not (HAVE_PLAYWRIGHT and CHROMIUM.is_file()), reason="needs playwright and /usr/bin/chromium (see .ci/run)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python launch.py`` in a subprocess on a free port, with its projects under ``home`` (``env``: more
    variables for the server, e.g. FOLEY_PASSWORD)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.extra_env = dict(env or {})
        self.projects = home / "projects"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 120.0) -> Server:
        port = free_port()
        env = (
            os.environ
            | {
                "FOLEY_PORT": str(port),
                "FOLEY_PROJECTS": str(self.projects),
                "FOLEY_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
                "FOLEY_RENDERS": "2",
                "HF_HUB_OFFLINE": "1",
                "GRADIO_ANALYTICS_ENABLED": "False",
                "GRADIO_TEMP_DIR": str(self.home / "gradio"),
            }
            | self.extra_env
        )
        self.log = open(self.home / f"server-{port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "launch.py")], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.port, self.url = port, f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the studio exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the studio did not answer on {self.url} within {timeout} s")

    def log_text(self) -> str:
        self.log.flush()
        return (self.home / Path(self.log.name).name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def restart(self) -> Server:
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("studio")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def playwright_driver():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def new_context(playwright_driver):
    """Opens browser sessions: each call a separate chromium with a fresh user-data folder."""
    contexts, folders = [], []

    def make():
        folder = tempfile.mkdtemp(prefix="foley-chromium-")
        ctx = playwright_driver.chromium.launch_persistent_context(
            folder,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        folders.append(folder)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pages(request, new_context):
    """Pages opened by a test (``pages.append(page)``); each is saved as a screenshot if the test fails."""
    opened = []
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        for k, page in enumerate(opened):
            try:
                page.screenshot(path=str(FAILURES / f"{request.node.name}-{k}.png"), full_page=True)
            except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the test's failure
                print(f"screenshot of page {k} failed: {exc}", file=sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
