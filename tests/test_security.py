"""Safe to leave running (issue 37): only the studio's own page may call it, deletes are confirmed on the
server and leave nothing served or copied, the database is never served, wrong passwords back off.

The first tests check the pieces in-process (the guard's decisions, the backoff, the store's database
place and start-up clean-up, the delete token); the ``slow`` ones drive a real ``python launch.py`` over
HTTP on 127.0.0.1 (no other address is ever contacted), through the same queue protocol the page uses."""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from app.guard import GuardPolicy, LoginBackoff, served_hosts
from app.projects import ProjectStore
from app.settings import StudioSettings
from app.studio import launch_studio
from app.studio_actions import StudioActions
from engine.errors import UserInputError
from tests.browser.conftest import Server
from tests.media_files import write_video
from tests.test_studio_projects import fake_inspect, upload

EVIL = "evil.example"
TYPES = (".mp4",)


def scope(headers: dict[str, str], method: str = "GET", path: str = "/") -> dict:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": method, "path": path, "headers": raw}


# ------------------------------------------------------------------------------------------ the guard


def test_only_the_studios_own_address_and_page_get_through(tmp_path):
    policy = GuardPolicy.for_settings(StudioSettings(port=7860), [tmp_path])
    own = {"Host": "127.0.0.1:7860"}
    assert policy.refusal(scope(own)) == ""
    assert policy.refusal(scope({"Host": "localhost:7860", "Origin": "http://localhost:7860"}, "POST")) == ""
    assert policy.refusal(scope({"Host": "[::1]:7860", "Origin": "http://[::1]:7860"}, "POST")) == ""
    link = own | {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert policy.refusal(scope(link)) == ""  # following a link to the studio is fine
    refused = [
        {"Host": f"{EVIL}:7860", "Origin": f"http://{EVIL}:7860"},  # DNS rebinding: the page's own name
        {"Host": "127.0.0.1:7861"},  # another port
        {},  # no Host at all
        own | {"Origin": f"http://{EVIL}:7860"},
        own | {"Origin": "null"},
        own | {"Origin": "http://127.0.0.1:8000"},  # another local server's page
        own | {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # an <img> on another site
        own | {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
    ]
    for headers in refused:
        assert policy.refusal(scope(headers, "POST")).startswith("refused"), headers
    assert served_hosts(StudioSettings(host="192.168.1.5", port=80)) == frozenset({"192.168.1.5:80", "192.168.1.5"})


def test_the_file_route_serves_only_its_own_folders(tmp_path):
    served, media = tmp_path / "cache", tmp_path / "projects"
    for folder in (served, media):
        folder.mkdir()
        (folder / "a.wav").write_bytes(b"RIFF")
    (served / "link.wav").symlink_to(media / "a.wav")
    policy = GuardPolicy.for_settings(StudioSettings(), [served])
    assert policy.may_serve(str(served / "a.wav"))
    for bad in (media / "a.wav", served / "link.wav", served / ".." / "projects" / "a.wav", served / "gone.wav"):
        assert not policy.may_serve(str(bad)), bad
    assert not policy.may_serve("http://127.0.0.1:9/x") and not policy.may_serve(str(served))


def test_login_backoff_checks_a_burst_of_wrong_passwords_ten_times_less():
    now = [0.0]
    backoff = LoginBackoff(clock=lambda: now[0])
    checked = 0
    for k in range(30):  # the burst: 30 wrong passwords in 0.40 s
        now[0] = k * 0.4 / 30
        if backoff.wait("127.0.0.1") == 0:
            checked += 1
            backoff.failed("127.0.0.1")
    assert checked * 10 <= 30 and backoff.wait("127.0.0.1") > 0 and backoff.wait("10.0.0.2") == 0
    assert [backoff.delay(n) for n in range(1, 8)] == [0, 0, 1, 2, 4, 8, 16] and backoff.delay(50) == 300
    backoff.succeeded("127.0.0.1")
    assert backoff.wait("127.0.0.1") == 0


def test_an_open_host_without_a_password_does_not_start(capsys, monkeypatch):
    assert StudioSettings().open_host_problem() == ""
    assert StudioSettings(host="0.0.0.0", password="pw").open_host_problem() == ""
    assert StudioSettings(host="0.0.0.0", allow_open=True).open_host_problem() == ""
    assert StudioSettings.from_env({"FOLEY_HOST": "0.0.0.0", "FOLEY_ALLOW_OPEN": "1"}).allow_open
    assert launch_studio(StudioSettings(host="0.0.0.0")) == 2  # refused before anything binds
    err = capsys.readouterr().err
    assert "FOLEY_ALLOW_OPEN=1" in err and "FOLEY_PASSWORD" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------- the store


def test_the_database_lives_beside_the_media_folder_and_an_old_one_moves_out(tmp_path):
    assert StudioSettings(projects_dir=tmp_path / "projects").db_url == f"sqlite:///{tmp_path / 'projects.db'}"
    old = ProjectStore(tmp_path / "elsewhere", f"sqlite:///{tmp_path / 'legacy' / 'studio.db'}")
    old.create_project("From before")  # still open: the change is in studio.db-wal, not yet in studio.db
    root = tmp_path / "projects"
    root.mkdir()
    for name in ("studio.db", "studio.db-wal"):
        shutil.copyfile(tmp_path / "legacy" / name, root / name)  # an older install, as a crash left it
    store = ProjectStore(root)
    assert [p.name for p in store.list_projects()] == ["From before"]
    assert (tmp_path / "projects.db").is_file() and not list(root.glob("studio.db*"))
    store.close()
    with pytest.raises(UserInputError, match="inside the media folder"):
        ProjectStore(root, f"sqlite:///{root / 'x.db'}")
    (root / "studio.db").write_bytes(b"")
    with pytest.raises(UserInputError, match="two studio databases"):
        ProjectStore(root)


def test_start_up_removes_orphans_and_reports_each(tmp_path, caplog):
    store = ProjectStore(tmp_path / "p")
    project = store.create_project("Doors")
    clip = store.import_clip(project.id, upload(tmp_path, "a.mp4"), "a.mp4", fake_inspect, 10_000, TYPES)
    kept, lost = (store.add_take(clip.id, np.zeros((10, 2), np.float32), 44100, cot={}, settings={}, seed=0,
                                 scores={}, total=0.5) for _ in range(2))  # fmt: skip
    lost.path.unlink()  # a row without its file
    stray = clip.folder / "takes" / f"{uuid.uuid4().hex}.wav"
    stray.write_bytes(b"RIFF")  # a file without its row (a crash between the rename and the row)
    gone = store.root / uuid.uuid4().hex
    gone.mkdir()  # a project folder without a project
    (store.root / "README.md").write_text("not the store's")
    with caplog.at_level(logging.WARNING, logger="foley.projects"):
        report = store.remove_orphans()
    assert len(report) == 3 and len([r for r in caplog.records if "clean-up" in r.getMessage()]) == 3
    assert [t.id for t in store.list_takes(clip.id)] == [kept.id] and kept.path.is_file()
    assert not stray.exists() and not gone.exists() and (store.root / "README.md").is_file()
    assert store.remove_orphans() == []


# -------------------------------------------------------------------------------------- the actions


def test_delete_needs_a_fresh_confirmation_from_the_same_session(tmp_path, monkeypatch):
    from gradio.processing_utils import save_file_to_cache

    from app.served import copies_of

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    video = tmp_path / "door.mp4"
    write_video(video, fmt="mp4", vcodec="libx264", seconds=1.0, acodec="aac")
    actions = StudioActions(StudioSettings(projects_dir=tmp_path / "projects"))
    a, b = (actions.create_project(name)["project"] for name in ("A", "B"))
    for p in (a, b):  # the same video in two projects: the web server's copies are shared
        actions.import_video(p, str(upload(tmp_path, "door.mp4", video.read_bytes())))
        for f in actions.store.served_media(p):
            save_file_to_cache(f, str(cache))  # what Gradio does when the page shows them
    folder = actions.store.get_project(a).folder
    copies_a, copies_b = (set(copies_of(actions.store.served_media(p), cache)) for p in (a, b))
    assert copies_a & copies_b  # the same source video: one copy
    with pytest.raises(UserInputError, match="not confirmed"):
        actions.confirm_delete(a, None, "s1")
    token = actions.ask_delete(a, "s1")["delete_token"]
    with pytest.raises(UserInputError, match="not confirmed"):
        actions.confirm_delete(a, token, "s2")  # another session's answer (and the token is now used up)
    with pytest.raises(UserInputError, match="not confirmed"):
        actions.confirm_delete(a, token, "s1")
    actions.confirm_seconds = 0.0
    with pytest.raises(UserInputError, match="not confirmed"):
        actions.confirm_delete(a, actions.ask_delete(a, "s1")["delete_token"], "s1")  # expired
    assert {p.name for p in actions.store.list_projects()} == {"A", "B"} and folder.is_dir()
    actions.confirm_seconds = 60.0
    view = actions.confirm_delete(a, actions.ask_delete(a, "s1")["delete_token"], "s1")
    assert view["message"] == "✓ Deleted “A”." and not folder.exists()
    assert all(c.is_file() for c in copies_b)  # B's page still shows the shared ones
    assert not any(c.is_file() for c in copies_a - copies_b)
    actions.confirm_delete(b, actions.ask_delete(b, "s1")["delete_token"], "s1")
    assert list(cache.rglob("*.*")) == []


# ----------------------------------------------------------------------------- a real server over HTTP


class Client:
    """The studio's HTTP API as its page uses it: events by element id and trigger, through the queue."""

    def __init__(self, server: Server) -> None:
        self.port = server.port
        _, _, page = request(self.port, "GET", "/")
        self.cookie = page.getheader("set-cookie").split(";")[0]  # this browser's client cookie (app.guard)
        self.config = json.loads(self.request("GET", "/config")[1])
        self.elem = {c["props"].get("elem_id"): c["id"] for c in self.config["components"]}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        return request(self.port, method, path, body, {"cookie": self.cookie} | (headers or {}))

    def event(self, elem_id: str, trigger: str) -> dict:
        target = [self.elem[elem_id], trigger]
        return next(d for d in self.config["dependencies"] if target in d["targets"])

    def join_body(self, elem_id: str, trigger: str, values: dict, session: str) -> bytes:
        dep = self.event(elem_id, trigger)
        ids = {v: k for k, v in self.elem.items()}
        data = [values.get(ids.get(i)) for i in dep["inputs"]]
        body = {"data": data, "fn_index": dep["id"], "session_hash": session, "trigger_id": self.elem[elem_id]}
        return json.dumps(body | {"event_data": None}).encode()

    def call(self, elem_id: str, trigger: str, values: dict, session: str) -> list:
        """Run one event in ``session`` and return its output values."""
        body = self.join_body(elem_id, trigger, values, session)
        status, text, _ = self.request("POST", "/gradio_api/queue/join", body, {"content-type": "application/json"})
        assert status == 200, text
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", f"/gradio_api/queue/data?session_hash={session}", headers={"cookie": self.cookie})
            response = conn.getresponse()
            for _ in range(1000):  # one event: a few messages
                line = response.readline().decode()
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message["msg"] == "process_completed":
                        assert message["success"], message
                        return message["output"]["data"]
            raise AssertionError("the event did not complete")
        finally:
            conn.close()

    def upload(self, path: Path, headers: dict | None = None):
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
                f"Content-Type: video/mp4\r\n\r\n"
            ).encode()
            + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"content-type": f"multipart/form-data; boundary={boundary}"} | (headers or {})
        return self.request("POST", "/gradio_api/upload", body, headers)

    def new_project(self, name: str, video: Path, session: str) -> list[str]:
        """Create project ``name`` and import ``video`` in ``session``; the URLs of the media the page shows."""
        self.call("create-project", "click", {"project-name": name}, session)
        status, text, _ = self.upload(video)
        assert status == 200, text
        (path,) = json.loads(text)
        file = {"path": path, "orig_name": video.name, "meta": {"_type": "gradio.FileData"}}
        out = self.call("upload", "upload", {"upload": file}, session)
        urls = sorted({u for u in _strings(out) if "/gradio_api/file=" in u})
        assert len(urls) >= 2, out  # the video and its original audio
        return [u[u.index("/gradio_api/file=") :] for u in urls]


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, body, response) of one request to 127.0.0.1:``port``; ``headers`` may replace Host."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    home = tmp_path_factory.mktemp("secure-studio")
    server = Server(home).start()
    try:
        yield server, Client(server)
    finally:
        server.stop()


def a_video(server: Server, seconds: float) -> Path:
    """A test video of its own (a project sharing another's bytes shares Gradio's copies: `app.served`)."""
    path = server.home / f"clip-{seconds:g}.mp4"
    write_video(path, fmt="mp4", vcodec="libx264", seconds=seconds, acodec="aac")
    return path


def project_names(server: Server) -> list[str]:
    store = ProjectStore(server.projects)
    try:
        return [p.name for p in store.list_projects()]
    finally:
        store.close()


def files_under(*roots: Path) -> list[str]:
    return sorted(str(p) for root in roots for p in root.rglob("*") if p.is_file() and ".db" not in p.name)


@pytest.mark.slow
def test_foreign_hosts_and_origins_are_refused_everywhere_and_change_nothing(studio):
    server, client = studio
    session, video = uuid.uuid4().hex, a_video(server, 1.0)
    urls = client.new_project("Doors", video, session)
    before = (project_names(server), files_under(server.projects, server.home / "gradio"))
    port = server.port
    foreign = [
        {"Host": f"{EVIL}:{port}", "Origin": f"http://{EVIL}:{port}"},  # a DNS-rebinding page
        {"Origin": f"http://{EVIL}:{port}"},  # another site's page, the studio's address
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # another site's <img> or <form>
    ]
    create = client.join_body("create-project", "click", {"project-name": "Evil"}, uuid.uuid4().hex)
    delete = client.join_body("confirm-yes", "click", {}, session)
    api = client.event("create-project", "click")["api_name"]
    json_type = {"content-type": "application/json"}
    for headers in foreign:
        for method, path, body, extra in [
            ("GET", "/", None, {}),  # the page
            ("GET", "/config", None, {}),  # every project's name is in the page's config
            ("GET", "/gradio_api/info", None, {}),  # the API
            ("POST", f"/gradio_api/call/{api}", json.dumps({"data": ["Evil"]}).encode(), json_type),
            ("POST", "/gradio_api/queue/join", create, json_type),  # queue joins
            ("POST", "/gradio_api/queue/join", delete, json_type),
            ("GET", urls[0], None, {}),  # the file route
        ]:
            status, text, _ = client.request(method, path, body, extra | headers)
            assert 400 <= status < 500, (method, path, headers, status, text[:200])
        status, text, _ = client.upload(video, headers)
        assert 400 <= status < 500, (headers, status)
    assert (project_names(server), files_under(server.projects, server.home / "gradio")) == before
    assert all(client.request("GET", u)[0] == 200 for u in urls)  # the page itself still gets them


@pytest.mark.slow
def test_the_file_route_serves_a_projects_media_only_to_the_browser_that_has_it_open(studio):
    server, client = studio
    session, other = uuid.uuid4().hex, Client(server)
    urls = client.new_project("Snow", a_video(server, 1.6), session)
    assert [client.request("GET", u)[0] for u in urls] == [200] * len(urls)
    assert [other.request("GET", u)[0] for u in urls] == [404] * len(urls)  # the URLs alone are not enough
    assert [request(server.port, "GET", u)[0] for u in urls] == [404] * len(urls)  # nor without a cookie
    client.call("project-pick", "input", {"project-pick": None}, session)  # the page closes the project
    assert [client.request("GET", u)[0] for u in urls] == [404] * len(urls)


@pytest.mark.slow
def test_delete_needs_the_servers_confirmation_and_then_nothing_stays_served(studio):
    server, client = studio
    session = uuid.uuid4().hex
    urls = client.new_project("Rain", a_video(server, 1.2), session)
    served = [client.request("GET", u)[1] for u in urls]
    assert all(len(b) > 100 for b in served)
    folder = ProjectStore(server.projects).list_projects()
    (folder,) = [p.folder for p in folder if p.name == "Rain"]

    out = client.call("confirm-yes", "click", {}, session)  # the delete endpoint, without the Delete… step
    assert any("was not deleted" in s for s in _strings(out)) and "Rain" in project_names(server)
    assert folder.is_dir() and all(client.request("GET", u)[0] == 200 for u in urls)

    client.call("delete-project", "click", {}, session)
    out = client.call("confirm-yes", "click", {}, session)
    assert any("Deleted “Rain”" in s for s in _strings(out)) and "Rain" not in project_names(server)
    assert [client.request("GET", u)[0] for u in urls] == [404] * len(urls)
    assert not folder.exists()
    left = [p for p in (server.home / "gradio").rglob("*") if p.is_file() and p.read_bytes() in served]
    assert left == []  # no copy of its media in the web server's folder (uploads included)


@pytest.mark.slow
def test_the_database_is_never_served(studio):
    server, client = studio
    session = uuid.uuid4().hex
    client.new_project("Wind", a_video(server, 1.4), session)
    (source,) = list(server.projects.glob("*/clips/*/source.mp4"))[:1]
    database = server.home / "projects.db"
    assert database.is_file() and not list(server.projects.glob("*.db*"))
    for path in (database, database.with_name("projects.db-wal"), server.projects / "studio.db", source):
        for route in ("/gradio_api/file=", "/gradio_api/file/"):
            status, text, _ = client.request("GET", f"{route}{path}")
            assert status == 404 and b"SQLite format" not in text, (route, path, status)


@pytest.mark.slow
def test_wrong_passwords_back_off_per_client(tmp_path):
    server = Server(tmp_path, env={"FOLEY_PASSWORD": "right horse battery"}).start()
    try:
        form = {"content-type": "application/x-www-form-urlencoded"}
        burst = [request(server.port, "POST", "/login", b"username=studio&password=guess", form) for _ in range(60)]
        answers = [(status, text, response) for status, text, response in burst]
        checked = [s for s, _, _ in answers if s == 400]  # the password was checked (and wrong)
        refused = [(s, r.getheader("retry-after"), t) for s, t, r in answers if s == 429]
        assert len(checked) * 10 <= len(answers) and len(checked) + len(refused) == len(answers)
        assert all(int(after) >= 1 and b"wrong passwords" in text for _, after, text in refused)
        status, _, _ = request(server.port, "POST", "/login", b"username=studio&password=right+horse+battery", form)
        assert status == 429  # locked out: not even the right password is checked during the wait
    finally:
        server.stop()
