"""RFB traffic and recording files for the recordings tests.

`synthetic_rfb` builds a connection's chunks from RFC 6143's messages, not random filler: the
server's handshake, FramebufferUpdates of Raw rects (a terminal-like screen of repeating glyph
rows, which compresses like Hextile does) and of zlib-deflated rects (already compressed, as
Tight's are), and the viewer's FramebufferUpdateRequests, KeyEvents and PointerEvents.
"""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from recordings.format import Kind, RecordingWriter, new_data_key, wrap_data_key

OWNER = 7


def _raw_update(rng: random.Random, width: int, rows: int) -> bytes:
    glyph_rows = [bytes(rng.choice((0, 0xC0)) for _ in range(64)) * (width * 4 // 64)]
    pixels = b"".join(rng.choice(glyph_rows) for _ in range(rows))
    rect = struct.pack("!HHHHi", 0, rng.randrange(600), width, rows, 0) + pixels
    return struct.pack("!BxH", 0, 1) + rect


def _deflated_update(rng: random.Random, size: int) -> bytes:
    noise = rng.randbytes(size)
    packed = zlib.compress(noise, 6)
    rect = struct.pack("!HHHHi", 0, 0, 64, 64, 7) + struct.pack("!I", len(packed)) + packed
    return struct.pack("!BxH", 0, 1) + rect


def synthetic_rfb(seconds: float = 12.0, seed: int = 22) -> list[tuple[int, int, int, bytes]]:
    """(kind, participant, offset µs, data) of a viewer on a busy desktop for `seconds`."""
    rng = random.Random(seed)
    chunks = [
        (Kind.TO_VIEWER, OWNER, 0, b"RFB 003.008\n"),
        (Kind.TO_DESKTOP, OWNER, 900, b"RFB 003.008\n"),
        (Kind.TO_VIEWER, OWNER, 1_400, b"\x01\x02"),
        (Kind.TO_DESKTOP, OWNER, 2_000, b"\x02"),
        (Kind.TO_VIEWER, OWNER, 2_300, rng.randbytes(16)),
        (Kind.TO_DESKTOP, OWNER, 3_000, rng.randbytes(16)),
        (Kind.TO_VIEWER, OWNER, 3_500, b"\x00\x00\x00\x00"),
        (Kind.TO_DESKTOP, OWNER, 4_000, b"\x01"),
    ]
    at = 10_000
    while at < seconds * 1_000_000:
        chunks.append((Kind.TO_DESKTOP, OWNER, at, struct.pack("!BBHHHH", 3, 1, 0, 0, 800, 600)))
        at += rng.randrange(2_000, 9_000)
        if rng.random() < 0.5:
            update = _raw_update(rng, 800, rng.randrange(8, 64))
        else:
            update = _deflated_update(rng, rng.randrange(2_000, 40_000))
        # The relay reads what the socket has: an update arrives in pieces of up to 64 KiB.
        for start in range(0, len(update), 65_536):
            chunks.append((Kind.TO_VIEWER, OWNER, at, update[start : start + 65_536]))
            at += rng.randrange(50, 400)
        if rng.random() < 0.2:
            key = rng.randrange(0x61, 0x7A)
            chunks.append((Kind.TO_DESKTOP, OWNER, at, struct.pack("!BBxxI", 4, 1, key)))
            chunks.append((Kind.TO_DESKTOP, OWNER, at + 80_000, struct.pack("!BBxxI", 4, 0, key)))
            chunks.append((Kind.TO_DESKTOP, 9, at, struct.pack("!BBHH", 5, 1, 100, 200)))
        at += rng.randrange(10_000, 60_000)
    return sorted(chunks, key=lambda chunk: chunk[2])


def write_recording(
    path: Path,
    chunks: list[tuple[int, int, int, bytes]],
    *,
    key: bytes | None = None,
    recording_id: str = "00000000-0000-4000-8000-000000000022",
    end: dict | None = None,
):
    """A complete recording of `chunks` at `path`, its wrapped key at `path.key`; the seal."""
    key = key or new_data_key()
    with open(path, "wb") as out:
        writer = RecordingWriter(out, key=key, recording_id=recording_id, meta={"role": "owner"})
        for kind, participant, at_us, data in chunks:
            writer.add(kind, participant, at_us, data)
        last = chunks[-1][2] if chunks else 0
        seal = writer.finish(end or {"closed_by": "viewer"}, last)
    path.with_name(path.name + ".key").write_text(wrap_data_key(key))
    return key, seal


def segments_of(path: Path) -> tuple[bytes, list[bytes]]:
    """A recording's header bytes and its segments (each with its length prefix)."""
    data = path.read_bytes()
    (header_length,) = struct.unpack_from("!I", data, 8)
    at = 12 + header_length
    header, segments = data[:at], []
    while at < len(data):
        (length,) = struct.unpack_from("!I", data, at)
        segments.append(data[at : at + 4 + length])
        at += 4 + length
    return header, segments
