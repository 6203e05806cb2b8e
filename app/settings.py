"""Settings of the studio server, read once from the environment (safe defaults: local only, no upload
larger than 500 MB, only the four video containers).

    FOLEY_HOST             address to bind (default 127.0.0.1: this machine only)
    FOLEY_PORT             port (default 7860)
    FOLEY_PROJECTS         folder of the project media (default <repo>/projects)
    FOLEY_DB_URL           any SQLAlchemy database URL (default: the SQLite file <FOLEY_PROJECTS>.db beside the
                           media folder, never inside it: the media folder is what the studio serves)
    FOLEY_PASSWORD         when set, the studio asks for it (user name FOLEY_USER, default "studio"); wrong
                           passwords make the same client wait longer and longer (app.guard)
    FOLEY_ALLOW_OPEN       1 = start on a FOLEY_HOST other than this machine without a password (refused otherwise)
    FOLEY_MAX_UPLOAD_MB    largest accepted upload in MB (default 500)
    FOLEY_UPLOAD_TYPES     accepted video extensions, comma-separated (default .mp4,.mov,.webm,.mkv)
    FOLEY_MODEL            model bundle used for planning and rendering (default "default")
    FOLEY_RENDERS          renders that may run at the same time, one per session (default 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # bind addresses that only this machine can reach
VIDEO_TYPES = (".mp4", ".mov", ".webm", ".mkv")  # the containers the issue asks for


@dataclass(frozen=True)
class StudioSettings:
    """Everything the server needs to start; `from_env` builds it from ``FOLEY_*`` variables."""

    host: str = "127.0.0.1"  # bind address; local only unless told otherwise
    port: int = 7860  # TCP port
    projects_dir: Path = ROOT / "projects"  # media of every project, one sub-folder each
    database_url: str = ""  # SQLAlchemy URL; "" = SQLite file studio.db inside projects_dir
    password: str = ""  # "" = no login page
    user: str = "studio"  # user name of the login page when a password is set
    max_upload_mb: float = 500.0  # uploads larger than this are refused
    upload_types: tuple[str, ...] = VIDEO_TYPES  # lower-case extensions with the dot
    model: str = "default"  # bundle name under assets/models or a folder
    render_concurrency: int = 2  # renders that may run at the same time (each in its own session)
    allow_open: bool = False  # serve a non-loopback host without a password (FOLEY_ALLOW_OPEN=1)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise UserInputError(f"FOLEY_PORT must be a port number 1..65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise UserInputError(f"FOLEY_MAX_UPLOAD_MB must be a positive number, got {self.max_upload_mb}")
        bad = [t for t in self.upload_types if t not in VIDEO_TYPES]
        if bad or not self.upload_types:
            raise UserInputError(f"FOLEY_UPLOAD_TYPES must be a subset of {', '.join(VIDEO_TYPES)}, got {bad}")
        if self.render_concurrency < 1:
            raise UserInputError(f"FOLEY_RENDERS must be 1 or more, got {self.render_concurrency}")

    @property
    def db_url(self) -> str:
        """The database URL in use."""
        return self.database_url or f"sqlite:///{database_beside(self.projects_dir)}"

    @property
    def loopback(self) -> bool:
        """Whether the server binds an address only this machine can reach."""
        return self.host.strip("[]").lower() in LOOPBACK_HOSTS

    def open_host_problem(self) -> str:
        """Why the server must not start as configured ("" when it may): a host other machines reach, no
        password, and no FOLEY_ALLOW_OPEN=1 (anyone on the network could then use and delete every project)."""
        if self.loopback or self.password or self.allow_open:
            return ""
        return (
            f"FOLEY_HOST={self.host} lets other machines reach the studio, and no FOLEY_PASSWORD is set: set "
            "FOLEY_PASSWORD, or FOLEY_ALLOW_OPEN=1 to serve it open anyway"
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StudioSettings:
        """Settings from ``FOLEY_*`` variables (``os.environ`` by default); a bad value is a `UserInputError`."""
        env = os.environ if env is None else env

        def number(name: str, default: float, kind=float):
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return kind(text)
            except ValueError:
                raise UserInputError(f"{name} must be a number, got {text!r}") from None

        types = env.get("FOLEY_UPLOAD_TYPES", "").strip()
        return cls(
            host=env.get("FOLEY_HOST", "").strip() or cls.host,
            port=number("FOLEY_PORT", cls.port, int),
            projects_dir=Path(env.get("FOLEY_PROJECTS", "").strip() or cls.projects_dir).expanduser(),
            database_url=env.get("FOLEY_DB_URL", "").strip(),
            password=env.get("FOLEY_PASSWORD", ""),
            user=env.get("FOLEY_USER", "").strip() or cls.user,
            max_upload_mb=number("FOLEY_MAX_UPLOAD_MB", cls.max_upload_mb),
            upload_types=tuple(_extension(t) for t in types.split(",") if t.strip()) if types else VIDEO_TYPES,
            model=env.get("FOLEY_MODEL", "").strip() or cls.model,
            render_concurrency=number("FOLEY_RENDERS", cls.render_concurrency, int),
            allow_open=env.get("FOLEY_ALLOW_OPEN", "").strip() == "1",
        )


def database_beside(projects_dir: Path) -> Path:
    """The default SQLite file of a media folder: ``<folder>.db`` next to it (``projects/`` -> ``projects.db``),
    outside every folder the studio serves."""
    folder = Path(projects_dir).expanduser().resolve()
    return folder.parent / f"{folder.name}.db"


def _extension(text: str) -> str:
    """'MP4' or '.mp4' -> '.mp4'."""
    t = text.strip().lower()
    return t if t.startswith(".") else f".{t}"
