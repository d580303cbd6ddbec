"""The WGREC v1 format: what is written reads back exactly, in segments cut by size and time,
compressed only where it pays, and the seal is of the bytes stored (docs/recordings.md)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from recordings import format as wgrec
from recordings.format import Kind, RecordingReader, RecordingWriter, new_data_key
from tests.recordings.traffic import OWNER, segments_of, synthetic_rfb, write_recording


def read_all(path, key):
    with open(path, "rb") as stream:
        reader = RecordingReader(stream, key)
        return reader, list(reader.records())


def test_a_connection_reads_back_chunk_for_chunk_in_order(tmp_path):
    chunks = synthetic_rfb(seconds=12)
    key, seal = write_recording(tmp_path / "r.wgrec", chunks, end={"closed_by": "desktop"})

    reader, records = read_all(tmp_path / "r.wgrec", key)

    assert [(r.kind, r.participant, r.offset_us, r.data) for r in records[:-1]] == chunks
    assert records[-1].kind == Kind.END
    assert records[-1].data == b'{"closed_by": "desktop"}'
    assert reader.header["recording"] == "00000000-0000-4000-8000-000000000022"
    assert reader.header["role"] == "owner"
    assert reader.header["cipher"] == "AES-256-GCM"
    assert {r.participant for r in records[:-1]} == {OWNER, 9}
    assert seal.duration == pytest.approx(chunks[-1][2] / 1e6)


def test_the_seal_is_the_size_and_sha256_of_the_file(tmp_path):
    path = tmp_path / "r.wgrec"
    key, seal = write_recording(path, synthetic_rfb(seconds=12))

    stored = path.read_bytes()
    assert seal.size == len(stored)
    assert seal.sha256 == hashlib.sha256(stored).hexdigest()
    reader, _ = read_all(path, key)
    assert (reader.size, reader.sha256) == (seal.size, seal.sha256)


def test_segments_are_cut_at_five_seconds_and_at_one_mib(tmp_path):
    slow = [(Kind.TO_VIEWER, 1, second * 1_000_000, b"tick") for second in range(21)]
    _, seal = write_recording(tmp_path / "slow.wgrec", slow)
    # Records at 0-4 s, 5-9, 10-14, 15-19, then 20 s with the END record.
    assert seal.segments == 5
    assert [row[1] for row in seal.segment_table] == [0, 5e6, 10e6, 15e6, 20e6]

    bulk = [(Kind.TO_VIEWER, 1, n, os.urandom(65_536)) for n in range(48)]  # 3 MiB in 48 µs
    _, seal = write_recording(tmp_path / "bulk.wgrec", bulk)
    assert seal.segments == 4  # three full MiB, then the END record alone
    header, segments = segments_of(tmp_path / "bulk.wgrec")
    assert [row[0] for row in seal.segment_table] == [
        len(header) + sum(len(s) for s in segments[:n]) for n in range(4)
    ]


def test_a_chunk_longer_than_a_segment_is_split_into_records_that_join_back(tmp_path):
    big = os.urandom(2 * wgrec.SEGMENT_BYTES + 5)
    key, _ = write_recording(tmp_path / "r.wgrec", [(Kind.TO_VIEWER, 1, 10, big)])

    _, records = read_all(tmp_path / "r.wgrec", key)

    assert b"".join(r.data for r in records if r.kind == Kind.TO_VIEWER) == big
    assert all(len(r.data) <= wgrec.RECORD_BYTES for r in records)


def modes(path, key) -> list[bytes]:
    with open(path, "rb") as stream:
        return [plain[:1] for _, plain in RecordingReader(stream, key).plains()]


def test_a_segment_is_compressed_only_when_its_sample_saves_a_tenth(tmp_path):
    text = [(Kind.TO_VIEWER, 1, n, b"\x00\xc0" * 40_000) for n in range(10)]
    key, seal = write_recording(tmp_path / "text.wgrec", text)
    assert modes(tmp_path / "text.wgrec", key) == [wgrec.MODE_ZSTD]
    assert seal.size < 50_000  # 800 kB of pixels

    noise = [(Kind.TO_VIEWER, 1, n, os.urandom(40_000)) for n in range(20)]
    key, seal = write_recording(tmp_path / "noise.wgrec", noise)
    assert modes(tmp_path / "noise.wgrec", key) == [wgrec.MODE_STORED]
    assert seal.size < 800_000 + 1_000  # stored as is: no zstd frame around it


def test_each_recording_has_its_own_nonce_prefix_and_nothing_of_its_key_in_the_file(tmp_path):
    key = new_data_key()
    outs = [io.BytesIO(), io.BytesIO()]
    writers = [RecordingWriter(out, key=key, recording_id="r") for out in outs]
    assert writers[0].header["nonce_prefix"] != writers[1].header["nonce_prefix"]
    writers[0].finish({}, 0)
    assert key not in outs[0].getvalue()


def test_a_file_that_is_not_a_recording_is_refused(tmp_path):
    path = tmp_path / "r.wgrec"
    path.write_bytes(b"RFB 003.008\n" + bytes(100))
    with pytest.raises(wgrec.RecordingBroken, match="not a WGREC recording"):
        read_all(path, new_data_key())
