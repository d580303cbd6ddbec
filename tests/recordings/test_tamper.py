"""A recording altered on disk is refused by its tags before any digest is compared: a flipped
bit, a dropped or cut-off tail, segments swapped, a segment or a header from another recording
(spike 22, section 1.8)."""

from __future__ import annotations

import struct

import pytest

from recordings.format import Kind, RecordingBroken, RecordingReader, new_data_key
from tests.recordings.traffic import segments_of, synthetic_rfb, write_recording


@pytest.fixture
def recording(tmp_path):
    """A 20 s recording of five or more segments: (path, key)."""
    path = tmp_path / "r.wgrec"
    key, seal = write_recording(path, synthetic_rfb(seconds=20))
    assert seal.segments >= 5
    return path, key


def refused(path, key) -> str:
    with open(path, "rb") as stream, pytest.raises(RecordingBroken) as caught:
        for _ in RecordingReader(stream, key).records():
            pass
    return str(caught.value)


def test_the_untouched_recording_reads(recording):
    path, key = recording
    with open(path, "rb") as stream:
        assert RecordingReader(stream, key).verify().segments >= 5


def test_one_flipped_bit_anywhere_in_a_segment_is_refused(recording):
    path, key = recording
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(data)
    assert "fails its tag" in refused(path, key)


def test_one_flipped_bit_in_the_header_is_refused(recording):
    path, key = recording
    header, _ = segments_of(path)
    data = bytearray(path.read_bytes())
    at = header.index(b'"owner"') + 2
    data[at] ^= 0x01  # "owner" becomes "nwner": still JSON, no longer the AAD of any segment
    path.write_bytes(data)
    assert "segment 0 fails its tag" in refused(path, key)


def test_a_dropped_last_segment_is_refused_as_truncated(recording):
    path, key = recording
    header, segments = segments_of(path)
    path.write_bytes(header + b"".join(segments[:-1]))
    assert "truncated" in refused(path, key)


def test_a_last_segment_cut_short_is_refused_as_truncated(recording):
    path, key = recording
    path.write_bytes(path.read_bytes()[:-100])
    assert "truncated" in refused(path, key)


def test_a_file_cut_at_a_segment_boundary_mid_recording_is_refused(recording):
    path, key = recording
    header, segments = segments_of(path)
    path.write_bytes(header + b"".join(segments[:2]))
    assert "segment 1, which is not the last (truncated)" in refused(path, key)


def test_swapped_segments_are_refused(recording):
    path, key = recording
    header, segments = segments_of(path)
    segments[1], segments[2] = segments[2], segments[1]
    path.write_bytes(header + b"".join(segments))
    assert "segment 1 fails its tag" in refused(path, key)


def test_bytes_after_the_last_segment_are_refused(recording):
    path, key = recording
    header, segments = segments_of(path)
    path.write_bytes(header + b"".join(segments) + segments[-1])
    assert "follow the last segment" in refused(path, key)


def test_a_segment_from_another_recording_under_the_same_key_is_refused(tmp_path, recording):
    """Even with the data key in common (a key never is), the other recording's nonce prefix
    and header bind its segments to it."""
    path, key = recording
    other = tmp_path / "other.wgrec"
    write_recording(other, synthetic_rfb(seconds=20, seed=5), key=key)
    header, segments = segments_of(path)
    _, foreign = segments_of(other)
    segments[2] = foreign[2]
    path.write_bytes(header + b"".join(segments))
    assert "segment 2 fails its tag" in refused(path, key)


def test_segments_behind_another_recordings_header_are_refused(tmp_path, recording):
    path, key = recording
    other = tmp_path / "other.wgrec"
    write_recording(other, synthetic_rfb(seconds=20, seed=5), key=key)
    other_header, _ = segments_of(other)
    _, segments = segments_of(path)
    path.write_bytes(other_header + b"".join(segments))
    assert "segment 0 fails its tag" in refused(path, key)


def test_another_key_opens_nothing(recording):
    path, _ = recording
    assert "segment 0 fails its tag" in refused(path, new_data_key())


def test_a_length_past_the_bound_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "r.wgrec"
    key, _ = write_recording(path, [(Kind.TO_VIEWER, 1, 0, b"x")])
    header, _ = segments_of(path)
    path.write_bytes(header + struct.pack("!I", 1 << 30))
    assert "claims" in refused(path, key)
