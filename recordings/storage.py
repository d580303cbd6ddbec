"""Where recordings are stored: a directory (`WORKGATE_RECORDINGS_DIR`), the default.

Each recording is `<root>/<yyyy>/<mm>/<dd>/<recording id>.wgrec` (its *object key* is that path
relative to the root). Directories are created 0700 and files 0600, whatever the umask. A
recording is written as `<key>.partial`, opened O_CREAT|O_EXCL, fsynced at every segment, and
renamed to its key only when it is sealed: a process that dies mid-recording leaves the
`.partial` file, which `partials()` lists and which the reader reports as truncated.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from django.conf import settings

PARTIAL = ".partial"
SUFFIX = ".wgrec"
_READ = 1 << 20


class RecordingUnavailable(Exception):
    """Storage cannot take a new recording (the relay refuses a required one: close 4503)."""


class Spool:
    """One recording being written. `write` and `sync` are called from the writer thread only."""

    def __init__(self, store: DirectoryStore, object_key: str) -> None:
        self.object_key = object_key
        self._final = store.path(object_key)
        self._partial = self._final.with_name(self._final.name + PARTIAL)
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask
        self._file = os.fdopen(fd, "wb", buffering=0)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Sealed: fsync, and the file takes its final name."""
        self.sync()
        self._file.close()
        os.replace(self._partial, self._final)
        _fsync_directory(self._final.parent)

    def abandon(self) -> None:
        """A failed recording: close the file and leave it under its `.partial` name."""
        with contextlib.suppress(OSError):
            self._file.close()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, object_key: str) -> Path:
        path = (self.root / object_key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"{object_key!r} is not a key of this store")
        return path

    def _directory(self, relative: Path) -> Path:
        """`root/relative`, every directory made 0700 when this creates it."""
        path = self.root
        for part in (None, *relative.parts):
            if part is not None:
                path = path / part
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
        return path

    def open_spool(self, recording_id: str, started_at: datetime) -> Spool:
        """A new recording's spool; RecordingUnavailable when storage cannot take it (checked
        before the relay dials the desktop)."""
        day = Path(f"{started_at:%Y}", f"{started_at:%m}", f"{started_at:%d}")
        try:
            self._directory(day)
            return Spool(self, str(day / f"{recording_id}{SUFFIX}"))
        except OSError as exc:
            raise RecordingUnavailable(f"cannot create the recording: {exc.strerror}") from exc

    def read(self, object_key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The stored bytes [start, end), in chunks of 1 MiB."""
        with open(self.path(object_key), "rb") as handle:
            handle.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = handle.read(_READ if left is None else min(_READ, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def size_and_sha256(self, object_key: str) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        for chunk in self.read(object_key):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()

    def delete(self, object_key: str) -> None:
        for path in (self.path(object_key), self.path(object_key + PARTIAL)):
            path.unlink(missing_ok=True)

    def partials(self) -> Iterator[str]:
        """Object keys whose recording was never sealed (the process died, or storage failed)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob(f"*{SUFFIX}{PARTIAL}")):
            yield str(path.relative_to(self.root))[: -len(PARTIAL)]


def default_store() -> DirectoryStore:
    return DirectoryStore(settings.WORKGATE_RECORDINGS_DIR)
