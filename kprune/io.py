"""Atomic file output: a reader never sees a half-written model, JSON or log."""

from __future__ import annotations

import json
import os
import tempfile

#: Called as ``_after_write(path)`` once each write below is complete (None: nothing). Tests set
#: it to stop a run right after any write, the way a kill between two writes would, and check
#: that ``--resume`` still ends where an uninterrupted run ends.
_after_write = None


def _wrote(path):
    if _after_write is not None:
        _after_write(os.fspath(path))


def atomic_write_bytes(path, data: bytes):
    """Writes ``data`` to ``path`` through a temporary file in the same folder + rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (or keep the
        # mode of the file it replaces), so outputs stay readable as before
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _wrote(path)


def _mode_for(path) -> int:
    """The permission bits of the file at ``path``, else 0666 less the process umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_json(path, obj):
    """Writes ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n").encode())


def _default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def save_model_atomic(model, path):
    """Saves a Keras model as ``.keras`` atomically (temporary ``.keras`` file + rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _wrote(path)


def append_jsonl(path, record: dict):
    """Appends one JSON line (flushed and fsynced: a crash loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=_default) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _wrote(path)


def truncate_to(path, size: int):
    """Cuts the file at ``path`` back to its first ``size`` bytes (no-op if it is not longer).

    A run commits the length of its ``log.jsonl`` with its state; on resume, lines written after
    the last commit (by the step the kill interrupted, which runs again) are cut off here, so the
    log never holds a line twice.
    """
    try:
        if os.path.getsize(path) > size:
            with open(path, "r+b") as f:
                f.truncate(size)
                f.flush()
                os.fsync(f.fileno())
    except FileNotFoundError:
        pass
