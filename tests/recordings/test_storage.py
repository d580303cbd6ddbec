"""The directory store: 0700 directories, 0600 files whatever the umask, a recording written
under a temporary name and renamed when sealed, an interrupted one left detectable, and a store
that cannot take a recording says so before anything is dialled."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recordings.format import RecordingBroken, RecordingReader, RecordingWriter, new_data_key
from recordings.storage import DirectoryStore, RecordingUnavailable, default_store

DAY = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
ID = "6f1c1a52-0d1e-4c8e-9d1f-3a0f9b2c7e11"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    previous = os.umask(0o000)
    yield
    os.umask(previous)


def test_directories_are_0700_and_files_0600_whatever_the_umask(tmp_path, loose_umask):
    store = DirectoryStore(tmp_path / "recordings")
    spool = store.open_spool(ID, DAY)
    writer = RecordingWriter(spool, key=new_data_key(), recording_id=ID, sync=spool.sync)
    writer.finish({}, 0)
    spool.close()

    assert spool.object_key == f"2026/12/07/{ID}.wgrec"
    for directory in (
        "recordings",
        "recordings/2026",
        "recordings/2026/12",
        "recordings/2026/12/07",
    ):
        assert mode(tmp_path / directory) == 0o700, directory
    assert mode(store.path(spool.object_key)) == 0o600


def test_a_recording_has_a_partial_name_until_it_is_sealed(tmp_path):
    store = DirectoryStore(tmp_path)
    key = new_data_key()
    spool = store.open_spool(ID, DAY)
    writer = RecordingWriter(spool, key=key, recording_id=ID, sync=spool.sync)
    writer.add(0, 1, 0, b"RFB 003.008\n")
    final = store.path(spool.object_key)
    assert not final.exists()
    assert list(store.partials()) == [spool.object_key]

    seal = writer.finish({}, 10)
    spool.close()

    assert final.exists() and list(store.partials()) == []
    assert store.size_and_sha256(spool.object_key) == (seal.size, seal.sha256)
    assert b"".join(store.read(spool.object_key, 8, 20)) == final.read_bytes()[8:20]


def test_an_interrupted_recording_stays_behind_and_reads_as_truncated(tmp_path):
    store = DirectoryStore(tmp_path)
    key = new_data_key()
    spool = store.open_spool(ID, DAY)
    writer = RecordingWriter(spool, key=key, recording_id=ID, sync=spool.sync)
    for second in range(12):  # two segments reach the disk; the process then dies
        writer.add(0, 1, second * 1_000_000, b"x" * 1000)
    spool.abandon()

    (left,) = store.partials()
    partial = store.path(left + ".partial")
    with open(partial, "rb") as stream, pytest.raises(RecordingBroken, match="truncated"):
        list(RecordingReader(stream, key).records())
    with open(partial, "rb") as stream:
        assert sum(1 for _ in RecordingReader(stream, None).plains()) == 2


def test_a_store_that_cannot_be_written_is_unavailable(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RecordingUnavailable, match="cannot create the recording"):
        DirectoryStore(tmp_path / "file" / "recordings").open_spool(ID, DAY)


def test_a_recording_is_never_opened_twice(tmp_path):
    store = DirectoryStore(tmp_path)
    store.open_spool(ID, DAY)
    with pytest.raises(RecordingUnavailable):
        store.open_spool(ID, DAY)


def test_delete_removes_the_recording_and_a_key_cannot_leave_the_root(tmp_path):
    store = DirectoryStore(tmp_path / "store")
    spool = store.open_spool(ID, DAY)
    spool.close()
    store.delete(spool.object_key)
    assert not store.path(spool.object_key).exists()
    with pytest.raises(ValueError):
        store.path("../elsewhere.wgrec")


def test_the_default_store_is_under_the_runtime_directory(settings):
    from config import settings as production

    assert production.WORKGATE_RECORDINGS_DIR == production.WORKGATE_RUNTIME_DIR / "recordings"
    settings.WORKGATE_RECORDINGS_DIR = Path("/srv/recordings")
    assert default_store().root == Path("/srv/recordings")
