"""Writing files safely: never over an input, never over an existing file without ``overwrite``.

Every seviz writer (stores, rec.json/rec.md, statistics and evaluation JSON,
pruned safetensors, figures, the demo's folder) calls :func:`check_output`
before it writes anything, and writes through :func:`atomic_write` (a temporary
file beside the target, renamed over it only once whole), so a failed write
(a full disk, Ctrl-C) leaves the old file as it was and no temporary file
behind.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from seviz.errors import DiskFullError, OutputError

PathLike = str | os.PathLike


def check_output(
    path: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    folders: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    param: str = "path",
    what: str = "output",
) -> Path:
    """Refuse to write ``path`` over an input, into an input folder, or over a file without ``overwrite``.

    Args:
        path: The file about to be written.
        inputs: Files the command reads (``None`` entries are ignored). Compared
            as the same file (hard links, symlinks) or the same resolved path.
        folders: Folders the command reads from: ``path`` may not lie inside one
            (an output there could replace an input, or be read as one later).
        overwrite: Whether an existing ``path`` may be replaced.
        param: The parameter that named ``path``, for the message.
        what: What ``path`` is (``store``, ``JSON``, ...), for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        OutputError: ``path`` is an input, lies in an input folder, is a folder,
            or exists and ``overwrite`` is false.
    """
    target = Path(path).expanduser()
    for source in inputs:
        if source is not None and _same_file(target, Path(source).expanduser()):
            raise OutputError(
                f"`{param}` {str(target)!r} is one of this command's inputs ({str(source)!r}); writing "
                f"it would destroy that input: pass another `{param}`",
                param=param,
            )
    resolved = target.resolve()
    for folder in folders:
        if folder is not None and resolved.is_relative_to(Path(folder).expanduser().resolve()):
            raise OutputError(
                f"`{param}` {str(target)!r} is inside the input folder {str(folder)!r}; an output there "
                f"could replace an input or be read as one: pass a `{param}` outside it",
                param=param,
            )
    if target.is_dir():
        raise OutputError(f"`{param}` {str(target)!r} is a folder; name a file", param=param)
    if target.exists() and not overwrite:
        raise OutputError(
            f"{what} {str(target)!r} already exists; pass `overwrite=True` to replace it, or another `{param}`",
            param=param,
        )
    return target


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def temporary_path(path: Path, tag: str = "partial") -> Path:
    """The temporary name beside ``path`` that a write goes to before it replaces ``path``."""
    return path.with_name(f".{path.name}.{tag}")


@contextmanager
def atomic_write(path: PathLike, tag: str = "partial") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any failure it is removed.

    ``tag`` names the temporary file (:func:`temporary_path`).

    Raises:
        DiskFullError: The device holding ``path`` ran out of space (the old file is untouched).
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(target, tag)
    try:
        yield temp
        os.replace(temp, target)
    except OSError as error:
        if is_no_space(error) and not isinstance(error, DiskFullError):
            raise no_space(target, f"{str(target)!r} is as it was") from None
        raise
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_with(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def atomic_write_with(path: PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)`` and move the result over ``path`` atomically."""
    with atomic_write(path) as temp:
        write(temp)
    return Path(path).expanduser()


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` (an ``OSError``, or HDF5's ``RuntimeError``) is a full disk."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "errno = 28," in text or "Disk quota exceeded" in text


def no_space(path: Path, kept: str) -> DiskFullError:
    """The error for a full disk while writing ``path``; ``kept`` says what survived."""
    error = DiskFullError(
        f"no space left on {str(path.parent.resolve())!r} while writing {str(path)!r}; {kept}"
    )
    error.errno = errno.ENOSPC
    return error


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the device holding ``path`` (a file or folder)."""
    folder = path if path.is_dir() else path.parent
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize
