"""The project store: projects, their clips (imported videos) and takes (renders), kept through SQLAlchemy
(the SQLite file ``projects.db`` beside the media folder ``projects/`` by default, any database URL by
setting) with the media in each project's own folder. The database never lies inside the media folder
(an older version kept ``studio.db`` there: it is moved out on the first start).

File layout under the store's root (names are generated; no user text ever becomes a path)::

    <project uid>/clips/<clip uid>/source.<ext>      the imported video, byte for byte
    <project uid>/clips/<clip uid>/preview.mp4       the picture remuxed into MP4 (only for .mov / .mkv)
    <project uid>/clips/<clip uid>/original.wav      the video's own audio (float, 44.1 kHz), if it had any
    <project uid>/clips/<clip uid>/takes/<uid>.wav   one file per take (float); never rewritten
    <project uid>/clips/<clip uid>/exports/<name>/   one folder per export
    <project uid>/sounds/<uid>.<ext>                 the sound library: tagged audio files, byte for byte
    <project uid>/training/<uid>/                    one training run: its dataset, checkpoint, log and model

Every write is write-then-rename: a clip or an export is assembled in a hidden ``.staging-*`` folder and
renamed into place; single files go through a hidden temporary name; database rows are written in one
transaction after their files exist, so a row never points at a missing file. A project is deleted by
renaming its folder to ``.trash-*`` first. Leftovers of an interrupted write are removed on start, and
the server's start removes (and logs) files without a row and rows without a file (`remove_orphans`).
Every change of a clip's blocks (an edit, a Plan, a Reset) first keeps the blocks it replaces as one step
of the clip's block history (table ``block_edits``, at most MAX_HISTORY steps per clip): `undo_edit` puts
them back, after a reload or a restart too.
Writes are serialised by one lock per store (SQLite allows one writer; other databases get the same
guarantee inside one server process), so sessions working at the same time never get the same take
number or a half-applied change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint, create_engine, event, func
from sqlalchemy import select as sql_select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from app.settings import database_beside
from engine.atomic import copy_file
from engine.errors import UserInputError
from engine.export import export_take

log = logging.getLogger("foley.projects")
MAX_NAME_CHARS = 80  # project names
MAX_CLIP_NAME_CHARS = 120  # clip names (from the uploaded file's name)
RATINGS = {-1: "rejected", 0: "", 1: "starred"}  # a take's rating, kept for preference learning
MAX_HISTORY = 200  # block history steps kept per clip (the oldest go first)
MAX_TAGS_CHARS = 600  # a sound's tags become its Semantic block (engine.cot.MAX_BLOCK_CHARS)
SOUND_TYPES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a")  # the sound library's file types
RUN_STATUSES = ("running", "stopped", "finished", "failed")  # a training run's life; stopped runs resume
STAGING, TRASH = ".staging-", ".trash-"  # prefixes of hidden folders of unfinished writes and deletions
LEGACY_DATABASE = "studio.db"  # where older versions kept the database: inside the media folder
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's companions of a database file, named <file><suffix>


class ProjectNotFound(UserInputError):
    """A project, clip or take id that does not exist (any more)."""


# ------------------------------------------------------------------------------------------ schema


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # stored as naive UTC (SQLite keeps no zone)


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)  # the project's folder name
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))  # as the user wrote it
    name_key: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)  # case-folded: names are unique
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)  # last weights and render settings
    clips: Mapped[list[ClipRow]] = relationship(back_populates="project", cascade="all, delete-orphan")
    sounds: Mapped[list[SoundRow]] = relationship(cascade="all, delete-orphan")
    runs: Mapped[list[RunRow]] = relationship(cascade="all, delete-orphan")


class ClipRow(Base):
    __tablename__ = "clips"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)  # the clip's folder name
    name: Mapped[str] = mapped_column(String(MAX_CLIP_NAME_CHARS))  # the uploaded file's name, cleaned
    source: Mapped[str] = mapped_column(String(64))  # file names inside the clip folder
    preview: Mapped[str] = mapped_column(String(64))
    original_audio: Mapped[str | None] = mapped_column(String(64), nullable=True)
    media: Mapped[dict] = mapped_column(JSON)  # duration, fps, width, height, audio channels and rate, frames
    planned: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the planner's CoT, as it wrote it
    edited: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the designer's CoT
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    project: Mapped[ProjectRow] = relationship(back_populates="clips")
    takes: Mapped[list[TakeRow]] = relationship(back_populates="clip", cascade="all, delete-orphan")
    history: Mapped[list[EditRow]] = relationship(cascade="all, delete-orphan", order_by="EditRow.id")


class EditRow(Base):
    """One step of a clip's block history: the designer's blocks as they were before a change (an edit,
    a Plan, a Reset), what Undo puts back. Kept in the database, so Undo works after a reload or restart."""

    __tablename__ = "block_edits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    cot: Mapped[dict] = mapped_column(JSON)  # the five fields as the page showed them before the change
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class TakeRow(Base):
    __tablename__ = "takes"
    __table_args__ = (UniqueConstraint("clip_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per clip, in render order
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    audio: Mapped[str] = mapped_column(String(64))  # file name inside the clip's takes/ folder
    sample_rate: Mapped[int] = mapped_column(Integer)
    n_samples: Mapped[int] = mapped_column(Integer)
    cot: Mapped[dict] = mapped_column(JSON)  # the CoT it was rendered from
    settings: Mapped[dict] = mapped_column(JSON)  # steps, guidance, candidates, weights, model
    seed: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict] = mapped_column(JSON)  # dimension -> [0, 1]
    total: Mapped[float] = mapped_column(Float)  # weighted total under the weights in ``settings``
    info: Mapped[dict] = mapped_column(JSON, default=dict)  # scorer details, candidates, render time
    rating: Mapped[int] = mapped_column(Integer, default=0)  # see RATINGS
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    clip: Mapped[ClipRow] = relationship(back_populates="takes")


class SoundRow(Base):
    __tablename__ = "sounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(MAX_CLIP_NAME_CHARS))  # the uploaded file's name, cleaned
    file: Mapped[str] = mapped_column(String(64))  # file name inside the project's sounds/ folder
    tags: Mapped[str] = mapped_column(String(MAX_TAGS_CHARS))  # the Semantic block of this text-audio pair
    duration: Mapped[float] = mapped_column(Float)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)  # the run's folder under training/
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per project
    method: Mapped[str] = mapped_column(String(32))  # finetune, grpo or dpo
    status: Mapped[str] = mapped_column(String(16))  # see RUN_STATUSES
    config: Mapped[dict] = mapped_column(JSON)  # the settings it was started with (what a resume reuses)
    result: Mapped[dict] = mapped_column(JSON, default=dict)  # summary, FoleyBench verdict, error
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


# --------------------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    folder: Path
    created: dt.datetime
    settings: dict


@dataclass(frozen=True)
class Clip:
    id: int
    project_id: int
    name: str
    folder: Path
    source: Path  # the imported video
    preview: Path  # what the browser plays
    original_audio: Path | None  # float WAV of the video's own audio, None when it had none
    media: dict  # duration, fps, width, height, audio_channels, audio_rate, n_frames
    planned: dict | None  # the planner's CoT
    edited: dict | None  # the designer's CoT
    created: dt.datetime

    @property
    def duration(self) -> float:
        return float(self.media["duration"])


@dataclass(frozen=True)
class Take:
    id: int
    clip_id: int
    number: int
    path: Path  # float WAV
    sample_rate: int
    n_samples: int
    cot: dict
    settings: dict
    seed: int
    scores: dict
    total: float
    info: dict
    rating: int
    created: dt.datetime

    @property
    def label(self) -> str:
        """'Take 3', with a star or a cross for rated takes."""
        mark = {1: " ★", -1: " ✗"}.get(self.rating, "")
        return f"Take {self.number}{mark}"


@dataclass(frozen=True)
class Sound:
    id: int
    project_id: int
    name: str
    path: Path  # the audio file
    tags: str
    duration: float


@dataclass(frozen=True)
class Run:
    id: int
    project_id: int
    number: int
    method: str
    status: str
    folder: Path  # <project>/training/<uid>: dataset, checkpoint, log and, when finished, the model
    config: dict
    result: dict
    created: dt.datetime
    updated: dt.datetime

    @property
    def label(self) -> str:
        """'LoRA fine-tune 2' (the method's name and the run's number in the project)."""
        return f"{METHOD_LABELS.get(self.method, self.method)} {self.number}"

    @property
    def offered(self) -> bool:
        """A finished run whose model passed (or skipped) the FoleyBench check: selectable for rendering."""
        passed = (self.result.get("bench_check") or {}).get("passed")
        return self.status == "finished" and passed is not False and (self.folder / "model.json").is_file()


METHOD_LABELS = {"finetune": "LoRA fine-tune", "grpo": "Fast-GRPO", "dpo": "Flow-DPO"}


@dataclass
class ClipMedia:
    """What the importer learnt about an uploaded video; file names are relative to the clip folder."""

    duration: float
    fps: float
    width: int
    height: int
    n_frames: int
    audio_channels: int = 0
    audio_rate: int = 0
    preview: str = ""  # "" = play the source itself
    original_audio: str | None = None
    extra: dict = field(default_factory=dict)


# Inspect(source video, clip folder) -> ClipMedia; may write derived files (preview, original audio) into
# the folder, raises UserInputError for a file that is not a usable video.
Inspect = Callable[[Path, Path], ClipMedia]


# ----------------------------------------------------------------------------------------- names


def clean_project_name(text: object) -> str:
    """A project name as stored: whitespace collapsed, no control characters, 1..MAX_NAME_CHARS long."""
    if not isinstance(text, str):
        raise UserInputError("a project name must be text")
    name = " ".join("".join(c for c in text if unicodedata.category(c)[0] != "C" or c.isspace()).split())
    if not name:
        raise UserInputError("give the project a name (1 to 80 characters)")
    if len(name) > MAX_NAME_CHARS:
        raise UserInputError(f"a project name has at most {MAX_NAME_CHARS} characters; this one has {len(name)}")
    return name


def clean_file_name(text: str) -> str:
    """The display name of an uploaded file: its last path component without control characters, at most
    MAX_CLIP_NAME_CHARS long; a longer name is shortened around its extension ("a long na…me.mp4": the
    middle of the stem goes, the extension stays, so the type check still sees it). Only shown, never
    used as a path."""
    base = re.split(r"[\\/]", str(text))[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip() or "video"
    if len(base) <= MAX_CLIP_NAME_CHARS:
        return base
    stem, ext = os.path.splitext(base)
    if len(ext) > 16:  # not an extension any type list holds: cut the name as it is
        stem, ext = base, ""
    keep = MAX_CLIP_NAME_CHARS - len(ext) - 1  # characters of the stem around the ellipsis
    head = (keep + 1) // 2
    return f"{stem[:head]}…{stem[len(stem) - (keep - head) :]}{ext}"


def _extension_of(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1024 / 1024:.1f} MB"


# ------------------------------------------------------------------------------------------ store


class ProjectStore:
    """Projects, clips and takes in a database plus a media folder. Safe to share between threads."""

    def __init__(self, root: str | os.PathLike, url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = url or f"sqlite:///{database_beside(self.root)}"
        self.database = _sqlite_file(self.url)  # the database's file; None for a server database
        if self.database is not None and self.database.is_relative_to(self.root):
            raise UserInputError(
                f"the database {self.database} lies inside the media folder {self.root}, which the studio serves; "
                f"point FOLEY_DB_URL beside it (the default is {database_beside(self.root)})"
            )
        if self.database is not None:
            self.database.parent.mkdir(parents=True, exist_ok=True)
        self._move_legacy_database()
        self.engine = _make_engine(self.url)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.RLock()  # one writer at a time (see the module docstring)
        self._clean_leftovers()

    def close(self) -> None:
        self.engine.dispose()

    def _move_legacy_database(self) -> None:
        """Move an older version's ``studio.db`` (and its -wal / -shm) out of the media folder to the configured
        database file, the side files first so that no committed change is left behind if this is interrupted."""
        old = self.root / LEGACY_DATABASE
        if not old.exists():
            return
        if self.database is None:
            log.warning("%s is an old studio database inside the media folder; not used (the database is %s)",
                        old, make_url(self.url).render_as_string(hide_password=True))  # fmt: skip
            return
        if self.database.exists():
            raise UserInputError(
                f"two studio databases: {old} (inside the media folder, from an older version) and {self.database}; "
                "keep one, move or delete the other, and start again"
            )
        for suffix in (*SQLITE_SIDE_FILES, ""):
            src = old.with_name(old.name + suffix)
            if src.exists():
                shutil.move(src, self.database.with_name(self.database.name + suffix))
        log.warning("moved the database %s out of the media folder to %s", old, self.database)

    # ------------------------------------------------------------------------------- helpers

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A session whose changes commit together at the end of the block (or not at all)."""
        with self._lock, self._session() as session, session.begin():
            yield session

    def _folder(self, uid: str) -> Path:
        return self.root / uid

    def _inside(self, path: Path) -> Path:
        """``path`` resolved, refused unless it lies inside the store's root (stored names are generated,
        so this never fails unless the database was edited by hand)."""
        p = path.resolve()
        if not p.is_relative_to(self.root):
            raise UserInputError(f"refusing a media path outside the projects folder: {path}")
        return p

    def _clean_leftovers(self) -> None:
        """Remove the hidden folders and files of writes that a crash interrupted."""
        for pattern in (f"{TRASH}*", f"*/clips/{STAGING}*", f"*/clips/*/exports/{STAGING}*"):
            for p in self.root.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob("*/clips/*/takes/.*"):  # temporary names of take files (engine.media)
            p.unlink(missing_ok=True)
        for p in self.root.glob("*/sounds/.*"):  # temporary names of library sounds
            p.unlink(missing_ok=True)

    def remove_orphans(self) -> list[str]:
        """Remove files without a row and rows without a file; returns (and logs) one line per removal.

        Called by the server at start only (a file whose row is about to be written would look orphaned
        while a server runs). Only generated names are touched: a folder or file the store did not name
        (a README in the media folder) is left alone."""
        report: list[str] = []
        with self._write() as s:
            projects = s.scalars(sql_select(ProjectRow)).all()
            known = {p.uid for p in projects}
            for folder in sorted(self.root.iterdir()):
                if folder.is_dir() and _is_uid(folder.name) and folder.name not in known:
                    shutil.rmtree(folder)
                    report.append(f"removed the folder {folder.name}: no project has it")
            for project in projects:
                folder = self._folder(project.uid)
                if not folder.is_dir():
                    folder.mkdir(parents=True)
                    report.append(f"project “{project.name}” had no folder: made an empty one")
                report += self._clip_orphans(s, project, folder) + self._library_orphans(s, project, folder)
        for line in report:
            log.warning("start-up clean-up: %s", line)
        return report

    def _clip_orphans(self, s: Session, project: ProjectRow, folder: Path) -> list[str]:
        report, rows = [], {c.uid: c for c in project.clips}
        for clip in list(project.clips):
            if not (folder / "clips" / clip.uid / clip.source).is_file():
                shutil.rmtree(folder / "clips" / clip.uid, ignore_errors=True)
                s.delete(clip)
                report.append(f"removed clip “{clip.name}” of “{project.name}”: its video file is missing")
                rows.pop(clip.uid)
        for path in sorted((folder / "clips").glob("*")):
            if path.is_dir() and _is_uid(path.name) and path.name not in rows:
                shutil.rmtree(path)
                report.append(f"removed the clip folder {path.name} of “{project.name}”: no clip has it")
        for clip in rows.values():
            takes = folder / "clips" / clip.uid / "takes"
            names = {t.audio for t in clip.takes}
            for take in list(clip.takes):
                if not (takes / take.audio).is_file():
                    s.delete(take)
                    report.append(f"removed take {take.number} of “{clip.name}”: its audio file is missing")
            for path in sorted(takes.glob("*.wav")):
                if path.name not in names and _is_uid(path.stem):
                    path.unlink()
                    report.append(f"removed the take file {path.name} of “{clip.name}”: no take has it")
        return report

    def _library_orphans(self, s: Session, project: ProjectRow, folder: Path) -> list[str]:
        report = []
        for sound in list(project.sounds):
            if not (folder / "sounds" / sound.file).is_file():
                s.delete(sound)
                report.append(f"removed the sound “{sound.name}” of “{project.name}”: its file is missing")
        files = {r.file for r in project.sounds}
        for path in sorted((folder / "sounds").glob("*")):
            if path.is_file() and _is_uid(path.stem) and path.name not in files:
                path.unlink()
                report.append(f"removed the sound file {path.name} of “{project.name}”: no sound has it")
        runs = {r.uid for r in project.runs}
        for run in list(project.runs):
            if not (folder / "training" / run.uid).is_dir():
                s.delete(run)
                report.append(f"removed training run {run.number} of “{project.name}”: its folder is missing")
        for path in sorted((folder / "training").glob("*")):
            if path.is_dir() and _is_uid(path.name) and path.name not in runs:
                shutil.rmtree(path)
                report.append(f"removed the training folder {path.name} of “{project.name}”: no run has it")
        return report

    def served_media(self, project_id: int) -> list[Path]:
        """Every file of the project the page may have shown (clips, takes, exports, sounds): what a delete
        must also remove from the copies the web server made (`app.served`). Training runs are never shown."""
        folder = self.get_project(project_id).folder
        return sorted(p for sub in ("clips", "sounds") for p in (folder / sub).rglob("*") if p.is_file())

    # ------------------------------------------------------------------------------- projects

    def _project_row(self, s: Session, project_id: int) -> ProjectRow:
        row = s.get(ProjectRow, project_id) if isinstance(project_id, int) else None
        if row is None:
            raise ProjectNotFound("that project does not exist any more; pick another one")
        return row

    def _project(self, row: ProjectRow) -> Project:
        return Project(row.id, row.name, self._folder(row.uid), row.created, dict(row.settings or {}))

    def list_projects(self) -> list[Project]:
        """Every project, by name."""
        with self._session() as s:
            rows = s.scalars(sql_select(ProjectRow).order_by(ProjectRow.name_key)).all()
            return [self._project(r) for r in rows]

    def get_project(self, project_id: int) -> Project:
        with self._session() as s:
            return self._project(self._project_row(s, project_id))

    def create_project(self, name: str) -> Project:
        """A new, empty project; `UserInputError` for a bad or taken name."""
        name = clean_project_name(name)
        uid = uuid.uuid4().hex
        with self._write() as s:
            self._check_free(s, name)
            self._folder(uid).mkdir(parents=True)
            row = ProjectRow(uid=uid, name=name, name_key=name.casefold(), settings={})
            s.add(row)
            try:
                s.flush()
            except BaseException:
                shutil.rmtree(self._folder(uid), ignore_errors=True)
                raise
            return self._project(row)

    def _check_free(self, s: Session, name: str, but: int | None = None) -> None:
        other = s.scalars(sql_select(ProjectRow).where(ProjectRow.name_key == name.casefold())).first()
        if other is not None and other.id != but:
            raise UserInputError(f"a project named {other.name!r} already exists; choose another name")

    def rename_project(self, project_id: int, name: str) -> Project:
        name = clean_project_name(name)
        with self._write() as s:
            row = self._project_row(s, project_id)
            self._check_free(s, name, but=row.id)
            row.name, row.name_key, row.updated = name, name.casefold(), _now()
            return self._project(row)

    def delete_project(self, project_id: int) -> None:
        """Delete a project, its clips, takes and media (the folder is first renamed out of the way)."""
        with self._write() as s:
            row = self._project_row(s, project_id)
            folder = self._folder(row.uid)
            trash = self.root / f"{TRASH}{row.uid}"
            if folder.exists():
                os.replace(folder, trash)
            try:
                s.delete(row)
                s.flush()
            except BaseException:
                if trash.exists():
                    os.replace(trash, folder)
                raise
        shutil.rmtree(trash, ignore_errors=True)

    def save_settings(self, project_id: int, settings: dict) -> Project:
        """Merge ``settings`` (JSON-able) into the project's stored settings."""
        with self._write() as s:
            row = self._project_row(s, project_id)
            row.settings = {**(row.settings or {}), **settings}
            row.updated = _now()
            return self._project(row)

    # ---------------------------------------------------------------------------------- clips

    def _clip_row(self, s: Session, clip_id: int) -> ClipRow:
        row = s.get(ClipRow, clip_id) if isinstance(clip_id, int) else None
        if row is None:
            raise ProjectNotFound("that clip does not exist any more; pick another one")
        return row

    def _clip(self, row: ClipRow) -> Clip:
        folder = self._folder(row.project.uid) / "clips" / row.uid
        return Clip(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            folder=folder,
            source=folder / row.source,
            preview=folder / (row.preview or row.source),
            original_audio=folder / row.original_audio if row.original_audio else None,
            media=dict(row.media),
            planned=dict(row.planned) if row.planned else None,
            edited=dict(row.edited) if row.edited else None,
            created=row.created,
        )

    def list_clips(self, project_id: int) -> list[Clip]:
        """The project's clips in import order."""
        with self._session() as s:
            self._project_row(s, project_id)
            rows = s.scalars(sql_select(ClipRow).where(ClipRow.project_id == project_id).order_by(ClipRow.id)).all()
            return [self._clip(r) for r in rows]

    def get_clip(self, clip_id: int) -> Clip:
        with self._session() as s:
            return self._clip(self._clip_row(s, clip_id))

    def check_upload(self, upload: str | os.PathLike, name: str, max_bytes: int, types: tuple[str, ...]) -> str:
        """The cleaned display name of an acceptable upload; `UserInputError` (what to do) otherwise."""
        shown = clean_file_name(name)
        ext = _extension_of(shown)
        if ext not in types:
            raise UserInputError(f"{shown}: not a video type the studio takes; use {', '.join(types)}")
        p = Path(upload)
        if not p.is_file():
            raise UserInputError(f"{shown}: the upload did not arrive; try again")
        size = p.stat().st_size
        if size == 0:
            raise UserInputError(f"{shown} is empty (0 bytes); choose the video file itself")
        if size > max_bytes:
            raise UserInputError(f"{shown} is {_mb(size)}; the upload limit is {_mb(max_bytes)}")
        return shown

    def import_clip(
        self,
        project_id: int,
        upload: str | os.PathLike,
        name: str,
        inspect: Inspect,
        max_bytes: int,
        types: tuple[str, ...],
    ) -> Clip:
        """Copy an uploaded video into the project and record it.

        The upload is checked (type by extension, size), copied into a hidden staging folder, and
        ``inspect(source, folder)`` reads it (and may write the preview and original audio there); only
        then is the folder renamed into place and the row written. Any failure leaves the project as it was.
        """
        shown = self.check_upload(upload, name, max_bytes, types)
        project = self.get_project(project_id)
        clips = project.folder / "clips"
        clips.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex
        staging = clips / f"{STAGING}{uid}"
        staging.mkdir()
        try:
            source = f"source{_extension_of(shown)}"
            shutil.copyfile(upload, staging / source)
            try:
                media = inspect(staging / source, staging)
            except UserInputError as exc:  # the reader names the staged copy; the designer knows the upload
                raise UserInputError(str(exc).replace(source, shown)) from None
            with self._write() as s:
                row = self._project_row(s, project_id)
                os.replace(staging, clips / uid)
                clip = ClipRow(
                    project=row,
                    uid=uid,
                    name=shown,
                    source=source,
                    preview=media.preview or source,
                    original_audio=media.original_audio,
                    media=_media_dict(media),
                )
                s.add(clip)
                row.updated = _now()
                try:
                    s.flush()
                except BaseException:
                    os.replace(clips / uid, staging)
                    raise
                return self._clip(clip)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def save_plan(self, clip_id: int, planned: dict) -> Clip:
        """Store the planner's CoT; the designer's blocks become the planner's text (the blocks they replace
        go into the clip's block history, see `undo_edit`)."""
        with self._write() as s:
            row = self._clip_row(s, clip_id)
            self._remember(s, row, planned)
            row.planned, row.edited = dict(planned), dict(planned)
            return self._clip(row)

    def save_edit(self, clip_id: int, edited: dict) -> Clip:
        """Store the designer's CoT (the planner's text stays as it was); the blocks it replaces go into the
        clip's block history."""
        with self._write() as s:
            row = self._clip_row(s, clip_id)
            self._remember(s, row, edited)
            row.edited = dict(edited)
            return self._clip(row)

    def _remember(self, s: Session, row: ClipRow, new: dict) -> None:
        """Push the clip's blocks onto its history before they change to ``new`` (nothing when they stay);
        at most MAX_HISTORY steps are kept."""
        old = dict(row.edited or row.planned or {})  # what the page shows (a clip planned on import: its plan)
        if old == dict(new):
            return
        old = old or {k: "" for k in new}  # never edited: Undo brings back empty blocks
        row.history.append(EditRow(cot=old))
        for step in row.history[:-MAX_HISTORY]:
            row.history.remove(step)

    def undo_edit(self, clip_id: int) -> Clip:
        """Put back the clip's blocks as they were before their last change (one step of its history)."""
        with self._write() as s:
            row = self._clip_row(s, clip_id)
            if not row.history:
                raise UserInputError("nothing to undo: the blocks of this clip have not changed since it was imported")
            row.edited = dict(row.history.pop().cot)
            return self._clip(row)

    def block_history(self, clip_id: int) -> list[dict]:
        """The clip's earlier blocks, oldest first (the last one is what `undo_edit` puts back)."""
        with self._session() as s:
            return [dict(step.cot) for step in self._clip_row(s, clip_id).history]

    # ---------------------------------------------------------------------------------- takes

    def _take_row(self, s: Session, take_id: int) -> TakeRow:
        row = s.get(TakeRow, take_id) if isinstance(take_id, int) else None
        if row is None:
            raise ProjectNotFound("that take does not exist any more; pick another one")
        return row

    def _take(self, row: TakeRow) -> Take:
        folder = self._folder(row.clip.project.uid) / "clips" / row.clip.uid / "takes"
        return Take(
            id=row.id,
            clip_id=row.clip_id,
            number=row.number,
            path=folder / row.audio,
            sample_rate=row.sample_rate,
            n_samples=row.n_samples,
            cot=dict(row.cot),
            settings=dict(row.settings),
            seed=row.seed,
            scores=dict(row.scores),
            total=row.total,
            info=dict(row.info or {}),
            rating=row.rating,
            created=row.created,
        )

    def add_take(
        self,
        clip_id: int,
        audio: np.ndarray,
        sample_rate: int,
        *,
        cot: dict,
        settings: dict,
        seed: int,
        scores: dict,
        total: float,
        info: dict | None = None,
    ) -> Take:
        """Record a new take: its audio (N, 2) float is written first (under a new name, level-safe and
        24-bit exactly as a command-line render writes it: `engine.export.export_take`), then its row with the
        next take number of the clip; the measured loudness and true peak go into its info. Never overwrites
        anything."""
        clip = self.get_clip(clip_id)
        folder = clip.folder / "takes"
        folder.mkdir(exist_ok=True)
        uid = uuid.uuid4().hex
        path = folder / f"{uid}.wav"
        written = export_take(audio, sample_rate, folder, uid, duration=len(audio) / sample_rate, rate=None)
        info = dict(info or {}) | {"level": written["level"]}
        try:
            with self._write() as s:
                row = self._clip_row(s, clip_id)
                number = (s.scalar(sql_select(func.max(TakeRow.number)).where(TakeRow.clip_id == clip_id)) or 0) + 1
                take = TakeRow(
                    clip=row,
                    number=number,
                    uid=uid,
                    audio=path.name,
                    sample_rate=int(sample_rate),
                    n_samples=int(len(audio)),
                    cot=dict(cot),
                    settings=dict(settings),
                    seed=int(seed),
                    scores={k: float(v) for k, v in scores.items()},
                    total=float(total),
                    info=dict(info or {}),
                )
                s.add(take)
                row.project.updated = _now()
                s.flush()
                return self._take(take)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def list_takes(self, clip_id: int) -> list[Take]:
        """The clip's takes, best weighted total first (ties: the newer first)."""
        with self._session() as s:
            self._clip_row(s, clip_id)
            q = (
                sql_select(TakeRow)
                .where(TakeRow.clip_id == clip_id)
                .order_by(TakeRow.total.desc(), TakeRow.number.desc())
            )
            return [self._take(r) for r in s.scalars(q).all()]

    def get_take(self, take_id: int) -> Take:
        with self._session() as s:
            return self._take(self._take_row(s, take_id))

    def rate_take(self, take_id: int, rating: int) -> Take:
        """Star (1), reject (-1) or clear (0) a take's rating."""
        if rating not in RATINGS:
            raise UserInputError(f"a rating is one of {sorted(RATINGS)}, got {rating!r}")
        with self._write() as s:
            row = self._take_row(s, take_id)
            row.rating = rating
            return self._take(row)

    def preference_pairs(self, project_id: int) -> list[tuple[Clip, Take, Take]]:
        """(clip, starred take, rejected take) for every starred and rejected take of the same clip that were
        rendered from the same CoT (the same condition: what a preference pair needs), by clip and number."""
        out = []
        for clip in self.list_clips(project_id):
            takes = sorted(self.list_takes(clip.id), key=lambda t: t.number)
            starred, rejected = [t for t in takes if t.rating == 1], [t for t in takes if t.rating == -1]
            out += [(clip, w, lo) for w in starred for lo in rejected if _same_cot(w.cot, lo.cot)]
        return out

    # --------------------------------------------------------------------------------- sounds

    def _sound(self, row: SoundRow, project_uid: str) -> Sound:
        path = self._folder(project_uid) / "sounds" / row.file
        return Sound(row.id, row.project_id, row.name, path, row.tags, row.duration)

    def add_sound(
        self, project_id: int, upload: str | os.PathLike, name: str, tags: str, duration: float, max_bytes: int
    ) -> Sound:
        """Copy an uploaded sound into the project's library (a hidden temporary name, then renamed) with its
        tags (the Semantic block it trains as) and duration (measured by the caller)."""
        shown = clean_file_name(name)
        ext = _extension_of(shown)
        if ext not in SOUND_TYPES:
            raise UserInputError(f"{shown}: not a sound file the library takes; use {', '.join(SOUND_TYPES)}")
        size = Path(upload).stat().st_size if Path(upload).is_file() else 0
        if not 0 < size <= max_bytes:
            raise UserInputError(f"{shown} is empty or larger than {_mb(max_bytes)}")
        tags = clean_tags(tags)
        project = self.get_project(project_id)
        folder = project.folder / "sounds"
        folder.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex
        final = copy_file(upload, folder / f"{uid}{ext}", mode=None)
        try:
            with self._write() as s:
                self._project_row(s, project_id)
                row = SoundRow(
                    project_id=project_id, uid=uid, name=shown, file=final.name, tags=tags, duration=duration
                )
                s.add(row)
                s.flush()
                return self._sound(row, project.folder.name)
        except BaseException:
            final.unlink(missing_ok=True)
            raise

    def list_sounds(self, project_id: int) -> list[Sound]:
        """The project's library sounds in the order they were added."""
        with self._session() as s:
            uid = self._project_row(s, project_id).uid
            rows = s.scalars(sql_select(SoundRow).where(SoundRow.project_id == project_id).order_by(SoundRow.id))
            return [self._sound(r, uid) for r in rows.all()]

    def set_sound_tags(self, sound_id: int, tags: str) -> Sound:
        tags = clean_tags(tags)
        with self._write() as s:
            row = s.get(SoundRow, sound_id) if isinstance(sound_id, int) else None
            if row is None:
                raise ProjectNotFound("that sound does not exist any more")
            row.tags = tags
            return self._sound(row, self._project_row(s, row.project_id).uid)

    # ----------------------------------------------------------------------------------- runs

    def _run(self, row: RunRow, project_uid: str) -> Run:
        folder = self._folder(project_uid) / "training" / row.uid
        config, result = dict(row.config or {}), dict(row.result or {})
        return Run(
            row.id, row.project_id, row.number, row.method, row.status, folder, config, result, row.created, row.updated
        )

    def create_run(self, project_id: int, method: str, config: dict) -> Run:
        """A new training run (status "running") with its own empty folder under the project's training/."""
        with self._write() as s:
            project = self._project_row(s, project_id)
            number = (s.scalar(sql_select(func.max(RunRow.number)).where(RunRow.project_id == project_id)) or 0) + 1
            row = RunRow(project_id=project_id, uid=uuid.uuid4().hex, number=number, method=method, status="running")
            row.config, row.result = dict(config), {}
            (self._folder(project.uid) / "training" / row.uid).mkdir(parents=True)
            s.add(row)
            s.flush()
            return self._run(row, project.uid)

    def update_run(self, run_id: int, status: str | None = None, result: dict | None = None) -> Run:
        """Set a run's status (one of RUN_STATUSES) and merge ``result`` (JSON-able) into its result."""
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"a run status is one of {RUN_STATUSES}, got {status!r}")
        with self._write() as s:
            row = self._run_row(s, run_id)
            row.status = status or row.status
            row.result = {**(row.result or {}), **(result or {})}
            row.updated = _now()
            return self._run(row, self._project_row(s, row.project_id).uid)

    def _run_row(self, s: Session, run_id: int) -> RunRow:
        row = s.get(RunRow, run_id) if isinstance(run_id, int) else None
        if row is None:
            raise ProjectNotFound("that training run does not exist any more")
        return row

    def get_run(self, run_id: int) -> Run:
        with self._session() as s:
            row = self._run_row(s, run_id)
            return self._run(row, self._project_row(s, row.project_id).uid)

    def list_runs(self, project_id: int) -> list[Run]:
        """The project's training runs, newest first."""
        with self._session() as s:
            uid = self._project_row(s, project_id).uid
            rows = s.scalars(sql_select(RunRow).where(RunRow.project_id == project_id).order_by(RunRow.number.desc()))
            return [self._run(r, uid) for r in rows.all()]

    def runs_with_status(self, status: str) -> list[Run]:
        """Every run of every project with ``status`` (the server marks interrupted runs at start)."""
        with self._session() as s:
            rows = s.scalars(sql_select(RunRow).where(RunRow.status == status)).all()
            return [self._run(r, self._project_row(s, r.project_id).uid) for r in rows]

    # -------------------------------------------------------------------------------- exports

    def write_export(self, take: Take, stem: str, write: Callable[[Path], dict]) -> tuple[Path, dict]:
        """Write one export of ``take``: ``write(folder)`` fills a hidden staging folder and returns what it
        wrote; the folder is then renamed to a new ``exports/<stem>-<UTC time>`` (never an existing one).
        Returns (final folder, what ``write`` returned); on any failure nothing is left behind."""
        exports = self._inside(self.get_clip(take.clip_id).folder) / "exports"
        exports.mkdir(exist_ok=True)
        staging = exports / f"{STAGING}{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            result = write(staging)
            with self._lock:
                stamp = _now().strftime("%Y%m%d-%H%M%S")
                final, k = exports / f"{stem}-{stamp}", 1
                while final.exists():
                    k += 1
                    final = exports / f"{stem}-{stamp}-{k}"
                os.replace(staging, final)
            return final, result
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def clean_tags(text: object) -> str:
    """Tags as stored: whitespace collapsed, no control characters, 1..MAX_TAGS_CHARS long."""
    if not isinstance(text, str):
        raise UserInputError("tags must be text")
    tags = " ".join("".join(c for c in text if unicodedata.category(c)[0] != "C" or c.isspace()).split())
    if not tags:
        raise UserInputError(
            "give the sound its tags (what it is: e.g. 'metal door slam'); they train as its Semantic block"
        )
    if len(tags) > MAX_TAGS_CHARS:
        raise UserInputError(f"tags have at most {MAX_TAGS_CHARS} characters; these have {len(tags)}")
    return tags


def _same_cot(a: dict, b: dict) -> bool:
    """Whether two takes' CoTs are the same condition (the four blocks and the negative prompt)."""
    keys = ("semantic", "temporal", "aesthetic", "spatial", "negative")
    return all((a.get(k) or "") == (b.get(k) or "") for k in keys)


def _media_dict(m: ClipMedia) -> dict:
    return {
        "duration": float(m.duration),
        "fps": float(m.fps),
        "width": int(m.width),
        "height": int(m.height),
        "n_frames": int(m.n_frames),
        "audio_channels": int(m.audio_channels),
        "audio_rate": int(m.audio_rate),
        **m.extra,
    }


def _is_uid(name: str) -> bool:
    """Whether ``name`` is one the store generates (uuid4().hex)."""
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory or a server database)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database).expanduser().resolve()


def _make_engine(url: str):
    """A SQLAlchemy engine; SQLite gets foreign keys, write-ahead logging and a 30 s busy wait."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
