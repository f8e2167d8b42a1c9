"""Atomic file and folder writes: nothing is ever seen half-written under its final name.

Files (:func:`atomic_path` and the helpers built on it): the content goes to a hidden temporary file in the
target's folder (same file system, so the final rename is atomic), is flushed and ``fsync``-ed, gets the
permissions a plain ``open`` would give (``0o666`` minus the umask; ``mkstemp`` creates ``0o600``) and is then
renamed over the target. If the writing raises, the temporary file is removed and an existing target is left
untouched.

Folders (:func:`partial_directory`, :func:`publish_directory`): built under a hidden ``.<name>.<pid>.*.partial``
name (permissions from the umask) and renamed into place when complete; an existing folder is replaced only
then. :func:`remove_stale_partials` removes those of writers that were killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


def _fsync_path(path: str | Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder
        if not directory:
            raise
    finally:
        os.close(fd)


def publish_temp_file(tmp: str | Path, path: str | Path) -> None:
    """Finish a temporary file: ``fsync`` it, give it the usual permissions and rename it to ``path``."""
    _fsync_path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
    _fsync_path(os.path.dirname(os.path.abspath(path)), directory=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary file name next to ``path`` (same extension) for writers that need a name (OpenCV, torch).

    The file is published to ``path`` (see :func:`publish_temp_file`) when the block ends normally, and removed
    when it raises.

    Args:
        path (str | Path): The final file; its folder is created if needed.

    Yields:
        str: The temporary file name.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        publish_temp_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete the hidden temporary files (``.<name>.<random><ext>``) that killed :func:`atomic_path` writes left
    in ``folder`` (not recursive); a missing folder is fine.

    Returns:
        list[Path]: The files removed.
    """
    folder = Path(folder)
    stale = [p for p in folder.glob('.*') if p.is_file()] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = 'wb', **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path` (``mode`` 'w' or 'wb'; ``kwargs`` go to ``open``)."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(text.encode('utf-8'), path)


def atomic_imwrite(img: np.ndarray, path: str | Path) -> None:
    """Write a uint8 BGR image with basicsr's ``imwrite`` (format from ``path``'s extension) atomically.

    Raises:
        OSError: If OpenCV cannot encode the image for ``path``'s extension.
    """
    import cv2
    from basicsr.utils import imwrite

    with atomic_path(path) as tmp:
        try:
            imwrite(img, tmp, auto_mkdir=False)
        except cv2.error as err:  # e.g. no encoder for the extension
            raise OSError(f'cannot write image {path}: {str(err).strip().splitlines()[-1]}') from None


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_npy(array: np.ndarray, path: str | Path) -> None:
    """``np.save`` to ``path`` (a ``.npy`` file) atomically."""
    with atomic_open(path, 'wb') as f:
        np.save(f, array)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def partial_directory(path: str | Path) -> Path:
    """Create and return a hidden ``.<name>.<pid>.*.partial`` folder next to ``path`` to build its content in.

    The folder gets the permissions ``mkdir`` would give (``0o777`` minus the umask; ``mkdtemp`` makes
    ``0o700``); the writer's process id in the name lets :func:`remove_stale_partials` tell abandoned ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.{os.getpid()}.', suffix='.partial', dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the ``.<name>.<pid>.*.partial`` folders of ``path`` left by writers that no longer run.

    Folders of a live process (another build of the same target under way) are kept.

    Returns:
        list[Path]: The folders removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f'.{path.name}.*.partial'):
        pid_text = candidate.name[len(path.name) + 2 :].split('.', 1)[0]
        if candidate.is_dir() and pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def publish_directory(tmp: str | Path, path: str | Path) -> Path:
    """Rename the complete folder ``tmp`` (from :func:`partial_directory`) to ``path``, replacing an existing one.

    An existing ``path`` is first moved aside under a hidden name, so ``path`` never holds a mix of both.
    """
    path = Path(path)
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.old', dir=path.parent))
        os.replace(path, old / 'previous')
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
    return path
