"""Who may call the studio: one ASGI middleware in front of every route of the Gradio app.

It refuses, before any handler runs (so nothing is read, written or deleted):

- a request whose ``Host`` is not an address the studio serves (127.0.0.1, localhost or [::1] with its port
  by default, the configured FOLEY_HOST otherwise): a DNS-rebinding page in the designer's own browser
  sends its own name as the Host;
- a request whose ``Origin`` is not the studio's own page (any other web page the designer visits), and a
  browser's cross-site sub-request (``Sec-Fetch-Site``, OWASP's "fetch metadata" isolation policy), which
  carries no Origin on a GET; following a link to the studio (a top-level navigation) stays allowed;
- a file-route request (either of `FILE_ROUTES`) for anything but the copies Gradio made to serve (its
  cache folder) and the FoleyWorld clips: never the media folder itself, never the database, and a copy
  only to a browser whose page has its project open (`CLIENT_COOKIE`, set on the first visit; `app.served`);
- in password mode, a login attempt from a client that is waiting out its backoff (`LoginBackoff`).

Gradio's `launch(app_kwargs={"middleware": [...]})` passes it to the FastAPI app it creates (Starlette's
``middleware=`` argument), inside Gradio's own CORS and compression layers and before routing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

from app.settings import LOOPBACK_HOSTS, StudioSettings

log = logging.getLogger("foley.guard")

FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")  # Gradio 6's file route and its deprecated twin
LOGIN_ROUTES = ("/login", "/login/")  # Gradio's password form posts here
CLIENT_COOKIE = "foley-client"  # names one browser: which projects its pages have open (file route)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # bind addresses meaning "every interface"


def served_hosts(settings: StudioSettings) -> frozenset[str]:
    """The ``Host`` values (lower case, ``name:port``) of the studio's own page."""
    host, port = settings.host.strip("[]").lower(), settings.port
    if settings.loopback:
        names = set(LOOPBACK_HOSTS)
    elif host in WILDCARD_HOSTS:  # every interface: this machine's names and addresses, and loopback
        names = {*LOOPBACK_HOSTS, socket.gethostname().lower(), socket.getfqdn().lower()}
        names |= {str(a[4][0]).lower() for a in _addresses(socket.gethostname())}
    else:
        names = {host}
    out = {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}
    if port == 80:  # a browser leaves the default port out
        out |= {f"[{n}]" if ":" in n else n for n in names}
    return frozenset(out)


def _addresses(name: str) -> list:
    try:
        return socket.getaddrinfo(name, None)
    except OSError:
        return []


@dataclass
class LoginBackoff:
    """Per-client backoff on wrong passwords: ``free`` wrong tries in a row cost nothing, each further one
    doubles the wait before the client's next try (``first_wait`` seconds, at most ``max_wait``); a right
    password clears it. A try during the wait is refused without checking the password (HTTP 429, with the
    wait in ``Retry-After``), so a burst of guesses is checked only a few times whatever its length."""

    free: int = 2  # wrong passwords in a row that cost no wait (typing slips)
    first_wait: float = 1.0  # seconds of the first wait
    max_wait: float = 300.0  # the longest wait (a lockout of five minutes)
    clock: Callable[[], float] = time.monotonic
    _clients: dict[str, tuple[int, float]] = field(default_factory=dict)  # client -> (failures, next try at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, client: str) -> float:
        """Seconds ``client`` must still wait before its password is checked again (0: it may try now)."""
        with self._lock:
            _, until = self._clients.get(client, (0, 0.0))
            return max(0.0, until - self.clock())

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` wrong passwords in a row."""
        if failures <= self.free:
            return 0.0
        return min(self.first_wait * 2.0 ** (failures - self.free - 1), self.max_wait)

    def failed(self, client: str) -> float:
        """Record a wrong password; returns the wait it imposes (logged when there is one)."""
        with self._lock:
            now = self.clock()
            self._clients = {c: v for c, v in self._clients.items() if v[1] + 2 * self.max_wait > now}  # forget old
            failures = self._clients.get(client, (0, 0.0))[0] + 1
            wait = self.delay(failures)
            self._clients[client] = (failures, now + wait)
        if wait:
            log.warning("login: %d wrong passwords in a row from %s; its next try waits %g s", failures, client, wait)
        return wait

    def policy_note(self) -> str:
        """What the login page tells the designer about the backoff."""
        return (
            f"After {self.free} wrong passwords each further one doubles the wait before the next try "
            f"({self.first_wait:g} s, then {2 * self.first_wait:g} s, …, at most {self.max_wait / 60:g} minutes)."
        )

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


@dataclass(frozen=True)
class GuardPolicy:
    """What `StudioGuard` lets through."""

    hosts: frozenset[str]  # Host values of the studio's own page (see served_hosts)
    file_roots: tuple[Path, ...]  # folders the file route may serve from (resolved)
    backoff: LoginBackoff | None = None  # password mode only
    cache: Path | None = None  # Gradio's copies: served only to a client that has their original open
    originals: Callable[[str], Iterable[Path]] | None = None  # client cookie -> the files it may see copies of
    _hashes: dict = field(default_factory=dict, compare=False)  # (path, size, mtime) -> Gradio's hash of it

    @classmethod
    def for_settings(
        cls,
        settings: StudioSettings,
        file_roots: Iterable[Path],
        cache: Path | None = None,
        originals: Callable[[str], Iterable[Path]] | None = None,
    ) -> GuardPolicy:
        roots = tuple(Path(r).resolve() for r in [*file_roots, *([cache] if cache else [])])
        backoff = LoginBackoff() if settings.password else None
        return cls(served_hosts(settings), roots, backoff, Path(cache).resolve() if cache else None, originals)

    def refusal(self, scope: dict) -> str:
        """Why a request must not reach the app ("" when it may)."""
        headers = _headers(scope)
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            return f"refused: the studio answers only its own address, not Host {host or '(none)'}"
        origin = headers.get("origin")
        if origin is not None and not self._own_origin(origin):
            return f"refused: requests from {origin} are not the studio's own page"
        site, mode = headers.get("sec-fetch-site", ""), headers.get("sec-fetch-mode", "")
        navigation = mode == "navigate" and scope.get("method", "GET") in ("GET", "HEAD")
        if site in ("cross-site", "same-site") and not navigation:
            return "refused: a request from another site"
        return ""

    def _own_origin(self, origin: str) -> bool:
        parts = urlsplit(origin.lower())
        return parts.scheme in ("http", "https") and parts.netloc in self.hosts and not parts.path.strip("/")

    def may_serve(self, route_path: str, client: str = "") -> bool:
        """Whether the file route may answer ``client`` (its cookie) for ``route_path`` (what follows ``file=``):
        an existing file inside one of ``file_roots``, after resolving links and ``..``, never a URL; and a
        copy in the cache only when it is a copy of one of the client's originals (the media of the projects
        its pages have open, and the FoleyWorld clips)."""
        if "://" in route_path or not route_path:
            return False
        try:
            path = Path(route_path).resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        if not path.is_file() or not any(path.is_relative_to(root) for root in self.file_roots):
            return False
        if self.cache is None or self.originals is None or not path.is_relative_to(self.cache):
            return True
        return self._copy_of_any(path, self.originals(client))

    def _copy_of_any(self, copy: Path, originals: Iterable[Path]) -> bool:
        """Whether ``copy`` (``<cache>/<hash>/<name>``, see app.served) is Gradio's copy of one of ``originals``."""
        from app.served import served_name

        size = copy.stat().st_size
        for f in originals:
            try:
                st = f.stat()
            except OSError:
                continue
            if st.st_size == size and served_name(f.name) == copy.name and self._hash(f, st) == copy.parent.name:
                return True
        return False

    def _hash(self, path: Path, st) -> str:
        from gradio.processing_utils import hash_file

        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = hash_file(path)
        return self._hashes[key]


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class StudioGuard:
    """ASGI middleware applying a `GuardPolicy` to every HTTP and websocket request (see the module docstring)."""

    def __init__(self, app, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        reason = self.policy.refusal(scope)
        if reason:
            await _refuse(scope, send, 403, reason)
            return
        path, client = scope.get("path", ""), client_cookie(scope)
        route = next((r for r in FILE_ROUTES if path.startswith(r)), None)
        if route is not None:
            allowed = await asyncio.to_thread(self.policy.may_serve, path[len(route) :], client)  # may hash
            if not allowed:
                await _refuse(scope, send, 404, "no such file")
                return
        if not client and scope["type"] == "http":  # a browser's first visit: it gets its client cookie
            send = _with_cookie(send)
        backoff = self.policy.backoff
        if backoff is not None and scope.get("method") == "POST" and path in LOGIN_ROUTES:
            await self._login(scope, receive, send, backoff)
            return
        await self.app(scope, receive, send)

    async def _login(self, scope, receive, send, backoff: LoginBackoff) -> None:
        client = (scope.get("client") or ("?", 0))[0]
        wait = backoff.wait(client)
        if wait > 0:
            seconds = math.ceil(wait)
            text = f"Too many wrong passwords from this address: wait {seconds} s, then try again."
            await _refuse(scope, send, 429, text, {"retry-after": str(seconds)})
            return

        async def watch(message) -> None:  # the login handler answers 200 (right) or 400 (wrong password)
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    backoff.succeeded(client)
                elif message["status"] == 400:
                    backoff.failed(client)
            await send(message)

        await self.app(scope, receive, watch)


def client_cookie(scope: dict) -> str:
    """The ``CLIENT_COOKIE`` a request carries ("" when none)."""
    jar = SimpleCookie()
    try:
        jar.load(_headers(scope).get("cookie", ""))
    except CookieError:
        return ""
    morsel = jar.get(CLIENT_COOKIE)
    return morsel.value if morsel is not None else ""


def _with_cookie(send):
    """``send`` that adds a new ``CLIENT_COOKIE`` to the response (HttpOnly, SameSite=Strict: only the studio's
    own page sends it back, so another site cannot borrow it)."""
    value = f"{CLIENT_COOKIE}={secrets.token_urlsafe(24)}; Path=/; HttpOnly; SameSite=Strict"

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", value.encode())])
        await send(message)

    return wrapped


async def _refuse(scope, send, status: int, text: str, extra: dict[str, str] | None = None) -> None:
    """Answer ``status`` with ``{"detail": text}`` (a websocket is closed before it is accepted: HTTP 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": text[:120]})
        return
    body = json.dumps({"detail": text}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
