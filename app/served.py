"""The copies of project media that the web server makes, and their removal.

Gradio never serves a file where it lies: every file an action returns (a clip's video and original audio,
a take, an export) is copied into Gradio's cache folder (``GRADIO_TEMP_DIR``, by default the system temp
folder's ``gradio/``) as ``<cache>/<sha256 of Gradio's hash seed and the file's bytes>/<file name>``
(`gradio.processing_utils.save_file_to_cache`), and uploads arrive in the same folder. The file route
serves only that folder (`app.guard`), so a copy's URL works until the copy is gone: deleting a project
removes the copies of its media here, and an imported upload is removed once the store holds its own copy.

Each server gives Gradio a private cache folder of its own (`private_cache`), removed when it stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("foley.served")
CACHE_PREFIX = "foley-studio-cache-"  # <GRADIO_TEMP_DIR>/foley-studio-cache-<pid>-<random>/: one server's copies


def cache_folder() -> Path:
    """Gradio's cache and upload folder as the running server uses it."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def private_cache() -> Path:
    """Give Gradio a cache folder of this server's own: a new folder only this user can read (mode 0700)
    inside ``GRADIO_TEMP_DIR`` (or the system temp folder), named for this process; the folders that stopped
    studios left there (a kill -9 skips every clean-up) are removed first, with a log line each. Call
    before the Blocks are built (each component reads the folder when it is made); `remove_cache` at exit."""
    parent = Path(os.environ.get("GRADIO_TEMP_DIR", "").strip() or tempfile.gettempdir()).expanduser()
    parent.mkdir(parents=True, exist_ok=True)
    for folder in sorted(parent.glob(f"{CACHE_PREFIX}*")):
        pid = folder.name[len(CACHE_PREFIX) :].split("-")[0]
        mine = folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid()
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            log.warning("removed %s: the copies a stopped studio served", folder)
    folder = Path(tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-", dir=parent))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder.resolve()


def remove_cache(folder: Path) -> None:
    """Remove this server's cache folder (every copy it served) when it stops."""
    shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def served_name(name: str) -> str:
    """The name Gradio gives its copy of a file called ``name``."""
    from gradio_client.utils import strip_invalid_filename_characters

    return strip_invalid_filename_characters(name)


def copies_of(files: Iterable[Path], cache: Path | None = None) -> list[Path]:
    """The copies Gradio made of ``files`` in ``cache`` (the server's cache folder by default). Only files whose
    name has a copy are hashed, so a project that was never shown costs a folder listing."""
    from gradio.processing_utils import hash_file

    cache = cache or cache_folder()
    names: set[str] = set()
    for folder in cache.iterdir() if cache.is_dir() else []:
        if folder.is_dir():
            names |= {f.name for f in folder.iterdir()}
    out = []
    for f in files:
        name = served_name(Path(f).name)
        if name in names and Path(f).is_file():
            copy = cache / hash_file(f) / name
            if copy.is_file():
                out.append(copy)
    return out


def remove_copies(copies: Iterable[Path], keep: Iterable[Path] = (), cache: Path | None = None) -> list[Path]:
    """Remove ``copies`` (from `copies_of`, found while their originals still existed) except those that are
    also copies of a file in ``keep`` (another project's identical file: its page still shows it); returns
    what was removed."""
    copies = [Path(c) for c in copies if Path(c).is_file()]
    sizes = {(c.name, c.stat().st_size) for c in copies}
    shared = [k for k in keep if Path(k).is_file() and (served_name(Path(k).name), Path(k).stat().st_size) in sizes]
    kept = set(copies_of(shared, cache))
    removed = []
    for copy in copies:
        if copy in kept:
            continue
        copy.unlink(missing_ok=True)
        removed.append(copy)
        _remove_if_empty(copy.parent)
    return removed


def discard_upload(path: str | os.PathLike | None) -> None:
    """Remove an upload from Gradio's upload folder once the store has its own copy (or refused it); a path
    anywhere else (a test's own file) is left alone."""
    if not path:
        return
    p = Path(path).resolve()
    if p.is_file() and p.is_relative_to(cache_folder()):
        p.unlink(missing_ok=True)
        _remove_if_empty(p.parent)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: another file shares the folder
