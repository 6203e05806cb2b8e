"""Writing a file so that nobody ever sees half of it: the project's one write-then-rename helper.

Every file the project writes (takes, exports, renders, weights, checkpoints, manifests, indexes, figures)
is written under a hidden temporary name beside its target (``.name.XXXX.tmp``) and renamed onto it with
`os.replace`, which is atomic on one file system: a reader sees the old file or the new one, a crash or an
error leaves the old file as it was and no temporary behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", mode: int | None = 0o644) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` for the caller to write; on success it gets ``mode``
    (None: private to the user, as created) and is renamed onto ``path``, on any error it is deleted.
    ``suffix`` keeps the extension a writer reads the format from (".tmp.wav" for soundfile, ".tmp.mp4")."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is not None:
            os.chmod(tmp, mode)  # mkstemp makes it private; most outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, non-ASCII kept, a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def staged_paths(targets: list[Path], mode: int | None = 0o644) -> Iterator[list[Path]]:
    """Several files that appear together or not at all: yield one fresh temporary path beside each target
    (its extension kept) for the caller to write; when every one is written they get ``mode`` and are renamed
    onto their targets, on any error all are deleted and no target is touched."""
    temps = []
    try:
        for target in targets:
            if not target.parent.is_dir():
                raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
            os.close(fd)
            temps.append(Path(tmp))
        yield temps
        for tmp, target in zip(temps, targets):
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


def copy_file(src: str | os.PathLike, dst: str | os.PathLike, mode: int | None = 0o644) -> Path:
    """Copy ``src`` to ``dst`` atomically (nothing to do when they are already the same file); returns ``dst``."""
    if Path(dst).exists() and os.path.samefile(src, dst):
        return Path(dst)
    with atomic_path(dst, f".tmp{Path(dst).suffix}", mode) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)
