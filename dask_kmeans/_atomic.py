"""Atomic output: write next to the destination under a hidden name, move into place only when complete.

A reader never sees half an output, a failed run leaves nothing behind, and an existing output is replaced
only when the caller asks for it. Works for local paths and for fsspec URLs (``file://``, ``memory://``,
object stores through their fsspec filesystem, where the final move is a copy and not atomic).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem


class OutputExistsError(FileExistsError):
    """The output path exists and ``overwrite`` was not set."""


def _exists_message(path: str) -> str:
    return (
        f"Output {path!r} already exists; it was left untouched. Pass overwrite=True (--overwrite on the "
        "command line) to replace it, or choose another path."
    )


def _hidden_sibling(path: str, kind: str, join=os.path.join, split=os.path.split) -> str:
    parent, name = split(path)
    return join(parent, f".{name}.{kind}-{uuid.uuid4().hex}")


def is_url(path: str) -> bool:
    return "://" in path


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, *, overwrite: bool = False, storage_options: dict | None = None
) -> Iterator[str]:
    """Yield a temporary path next to ``path``; move it into place when the block exits without error.

    Parameters
    ----------
    path : str or os.PathLike
        The final output: a local path or an fsspec URL. It may be a file or a directory.
    overwrite : bool, default=False
        Replace an existing output. Without it an existing output raises before anything is written.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Yields
    ------
    str
        A temporary path on the same filesystem, named ``.{name}.tmp-{uuid}`` in the same directory: a
        local path for local outputs (``file://`` included), a URL of the same protocol otherwise. The
        block writes its output there (a file or a directory).

    Raises
    ------
    OutputExistsError
        Before yielding, when ``path`` exists and ``overwrite`` is False; also when something else created
        ``path`` while the block ran.

    Notes
    -----
    On error the temporary path is removed and any existing output is left untouched. A directory that
    is replaced is first moved aside to a hidden name, then the new one is moved in, then the old one is
    deleted, so the output path never holds a mixture of old and new files.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_output(target) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> open(target).read()
    'done'
    """
    path = os.fspath(path)
    if is_url(path):
        fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        if not isinstance(fs, LocalFileSystem):
            with _atomic_fsspec(fs, root, path, overwrite) as tmp:
                yield tmp
            return
        with _atomic_local(root, overwrite, shown=path) as tmp:
            yield tmp
        return
    with _atomic_local(path, overwrite, shown=path) as tmp:
        yield tmp


@contextlib.contextmanager
def _atomic_local(path: str, overwrite: bool, shown: str | None = None) -> Iterator[str]:
    path = os.path.abspath(path)
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(_exists_message(shown or path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _hidden_sibling(path, "tmp")
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise RuntimeError(f"Nothing was written to the temporary output {tmp!r} for {path!r}.")
        _move_into_place_local(tmp, path, overwrite)
    except BaseException:
        _remove_local(tmp)
        raise


def _move_into_place_local(tmp: str, path: str, overwrite: bool) -> None:
    if not os.path.lexists(path):
        # os.rename would replace a file created in the meantime; the check narrows that window to nothing
        # that matters for a single writer per output.
        os.replace(tmp, path)
        return
    if not overwrite:
        raise OutputExistsError(_exists_message(path))
    if os.path.isfile(tmp) and os.path.isfile(path):
        os.replace(tmp, path)  # atomic for files
        return
    # Directories cannot be swapped in one step: move the old one aside first.
    old = _hidden_sibling(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove_local(old)


def _remove_local(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def _atomic_fsspec(fs: fsspec.AbstractFileSystem, root: str, url: str, overwrite: bool) -> Iterator[str]:
    if fs.exists(root) and not overwrite:
        raise OutputExistsError(_exists_message(url))
    tmp = _hidden_sibling(root, "tmp", join=posixpath.join, split=posixpath.split)
    try:
        yield fs.unstrip_protocol(tmp)
        if not fs.exists(tmp):
            raise RuntimeError(f"Nothing was written to the temporary output {tmp!r} for {url!r}.")
        _move_into_place_fsspec(fs, tmp, root, url, overwrite)
    except BaseException:
        _remove_fsspec(fs, tmp)
        raise


def _move_into_place_fsspec(fs: fsspec.AbstractFileSystem, tmp: str, root: str, url: str, overwrite: bool):
    if not fs.exists(root):
        fs.mv(tmp, root, recursive=True)
        return
    if not overwrite:
        raise OutputExistsError(_exists_message(url))
    # fsspec's mv onto an existing directory moves *into* it; move the old output aside first.
    old = _hidden_sibling(root, "old", join=posixpath.join, split=posixpath.split)
    fs.mv(root, old, recursive=True)
    try:
        fs.mv(tmp, root, recursive=True)
    except BaseException:
        fs.mv(old, root, recursive=True)
        raise
    _remove_fsspec(fs, old)


def _remove_fsspec(fs: fsspec.AbstractFileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if fs.exists(path):
            fs.rm(path, recursive=True)
