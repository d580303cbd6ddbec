"""The `WGREC` v1 container (docs/recordings.md): a plain header, then sealed segments of records.

    file    = preamble header_len header segment*
    preamble= "WGREC" 0x00, u8 version (1), u8 0
    header  = canonical JSON (sorted keys, no spaces, UTF-8), header_len = u32 big-endian
    segment = u32 big-endian length, AES-256-GCM(data key, nonce, plain, aad = preamble..header)
    nonce   = nonce_prefix (7 random bytes, in the header) || u32 segment index || u8 last
    plain   = u8 mode (b"Z": one zstd frame, b"S": stored) || body
    body    = record*
    record  = u8 kind, uvarint participant, uvarint delta_us, uvarint length, data

A segment is cut at SEGMENT_BYTES of records or SEGMENT_SECONDS, whichever comes first, and at
the end, where the last segment (holding the END record) is sealed with last = 1. The index and
the last flag in the nonce and the header as associated data make a segment fail its tag when it
is altered, moved, dropped from the tail, or taken from another recording.

This module is synchronous and does no I/O of its own beyond `out.write` / `stream.read`; the
writer thread (recordings/writer.py) drives `RecordingWriter` and the commands drive the reader.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO, Protocol

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import crypto

MAGIC = b"WGREC\x00"
VERSION = 1
PREAMBLE = MAGIC + bytes([VERSION, 0])
CIPHER = "AES-256-GCM"
KEY_BYTES = 32
NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16

SEGMENT_BYTES = 1 << 20  # records per segment, before compression
SEGMENT_SECONDS = 5
# A longer chunk is split into records of at most this many bytes, so a segment's plain text is
# under 2 * SEGMENT_BYTES and the reader can bound what it accepts.
RECORD_BYTES = SEGMENT_BYTES
MAX_PLAIN = 2 * SEGMENT_BYTES + 64
MAX_SEALED = MAX_PLAIN + TAG_BYTES + 64  # a zstd frame of incompressible data is a little larger
MAX_HEADER = 64 << 10

PROBE_BYTES = 64 << 10
MIN_SAVING = 0.10  # compress a segment only when its probe shrinks by at least this much
ZSTD_LEVEL = 3
MODE_ZSTD = b"Z"
MODE_STORED = b"S"

_U32 = struct.Struct(">I")


class Kind(enum.IntEnum):
    TO_VIEWER = 0  # desktop -> viewer bytes, as read from the desktop
    TO_DESKTOP = 1  # viewer -> desktop bytes, as forwarded (after the view-only filter)
    DROPPED = 2  # viewer -> desktop bytes the view-only filter dropped
    MARKER = 3  # JSON {"type": "key|click|clipboard|resize|note", ...}, the writer's own
    END = 4  # JSON: how the connection ended; the last record of a complete recording


class RecordingBroken(Exception):
    """The stored bytes are not an intact WGREC v1 recording under this key (the message says
    where and why)."""


@dataclass(frozen=True)
class Record:
    kind: int
    participant: int
    offset_us: int  # from the recording's start (the sum of the deltas so far)
    data: bytes


@dataclass
class Seal:
    """What the writer knows of the stored object once it is closed (or failed)."""

    size: int
    sha256: str
    segments: int
    duration: float  # seconds, from the start to the last record
    status: str = "complete"  # or "failed"
    error: str | None = None
    # Per segment, by index: [byte offset of its length prefix, first record's offset in µs].
    segment_table: list[list[int]] = field(default_factory=list)


# --- The data key ------------------------------------------------------------------------------


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def data_key_text(key: bytes) -> str:
    """The data key as a `Recording.data_key` EncryptedTextField holds it in Python (base64);
    the field encrypts it with the project's keys on save."""
    if len(key) != KEY_BYTES:
        raise ValueError("a recording's data key is 32 bytes")
    return base64.b64encode(key).decode()


def data_key_from_text(text: str) -> bytes:
    key = base64.b64decode(text.encode(), validate=True)
    if len(key) != KEY_BYTES:
        raise ValueError("a recording's data key is 32 bytes")
    return key


def wrap_data_key(key: bytes) -> str:
    """The data key wrapped with the first of WORKGATE_ENCRYPTION_KEYS: exactly the text an
    EncryptedTextField column stores for `data_key_text(key)`, so `rotate_secrets` rewraps it
    like any other secret and never touches the recording's bytes."""
    return crypto.encrypt(data_key_text(key))


def unwrap_data_key(wrapped: str) -> bytes:
    """The data key from its wrapped text, under any of WORKGATE_ENCRYPTION_KEYS
    (ImproperlyConfigured when none opens it, as for every stored secret)."""
    return data_key_from_text(crypto.decrypt(wrapped))


# --- Encoding ----------------------------------------------------------------------------------


def _uvarint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + _U32.pack(index) + (b"\x01" if last else b"\x00")


def encode_header(meta: dict) -> bytes:
    body = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_HEADER:
        raise ValueError("a recording's header is at most 64 KiB")
    return PREAMBLE + _U32.pack(len(body)) + body


class Output(Protocol):
    def write(self, data: bytes, /) -> object: ...


class RecordingWriter:
    """Writes one recording to `out` as records arrive; keeps the SHA-256 and size of every byte
    it has written (the stored object, never re-read). Not thread-safe: one thread drives it.

    `add` takes each record's time as µs from the recording's start (a monotonic clock), and
    `sync` is called after every segment written (the directory spool fsyncs there)."""

    def __init__(
        self,
        out: Output,
        *,
        key: bytes,
        recording_id: str,
        started_at: datetime | None = None,
        meta: dict | None = None,
        sync=None,
    ) -> None:
        self._out = out
        self._sync = sync
        self._aead = AESGCM(key)
        self._prefix = os.urandom(NONCE_PREFIX_BYTES)
        started_at = started_at or datetime.now(UTC)
        header = {
            **(meta or {}),
            "format": VERSION,
            "recording": str(recording_id),
            "started_at": started_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "cipher": CIPHER,
            "compression": "zstd",
            "nonce_prefix": self._prefix.hex(),
        }
        self.header = header
        self._aad = encode_header(header)
        self._hash = hashlib.sha256()
        self.size = 0
        # The open segment's plain text: its mode byte (set at the cut), then its records, so
        # sealing a stored segment copies nothing.
        self._body = bytearray(MODE_STORED)
        self._first_us: int | None = None  # the open segment's first record
        self._last_us = 0
        self._index = 0
        self._table: list[list[int]] = []
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.closed = False
        self._write(self._aad)

    @property
    def segments(self) -> int:
        return self._index

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.size += len(data)

    def add(self, kind: int, participant: int, at_us: int, data: bytes) -> None:
        view = memoryview(data)
        start = 0
        while True:
            piece = view[start : start + RECORD_BYTES]
            if self._first_us is None:
                self._first_us = at_us
            elif at_us - self._first_us >= SEGMENT_SECONDS * 1_000_000:
                self._cut(last=False)
                self._first_us = at_us
            # The clock is monotonic, but a record taken on another thread may arrive a little
            # out of order: its delta is then 0, never negative.
            delta = max(0, at_us - self._last_us)
            self._last_us += delta
            self._body += bytes([kind]) + _uvarint(participant) + _uvarint(delta)
            self._body += _uvarint(len(piece))
            self._body += piece
            if len(self._body) > SEGMENT_BYTES:
                self._cut(last=False)
            start += RECORD_BYTES
            if start >= len(view):
                return

    def cut_if_older(self, now_us: int) -> None:
        """Seal the open segment once its first record is SEGMENT_SECONDS old, so a quiet
        connection still reaches storage (a crash loses at most that much)."""
        if self._first_us is not None and now_us - self._first_us >= SEGMENT_SECONDS * 1_000_000:
            self._cut(last=False)

    def _cut(self, *, last: bool) -> None:
        plain = self._body
        with memoryview(plain) as view, view[1:] as records, records[:PROBE_BYTES] as probe:
            if probe and len(self._compressor.compress(probe)) <= (1 - MIN_SAVING) * len(probe):
                packed = self._compressor.compress(records)
                if len(packed) < len(records):
                    plain = MODE_ZSTD + packed
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plain, self._aad)
        self._table.append([self.size, self._first_us if self._first_us is not None else 0])
        self._write(_U32.pack(len(sealed)))
        self._write(sealed)
        self._index += 1
        del self._body[1:]
        self._first_us = None
        if self._sync is not None:
            self._sync()

    def finish(self, end: dict, at_us: int) -> Seal:
        """Write the END record and the last segment; the seal of the complete recording."""
        self.add(Kind.END, 0, at_us, json.dumps(end, sort_keys=True).encode())
        self._cut(last=True)
        self.closed = True
        return self.seal()

    def seal(self, *, status: str = "complete", error: str | None = None) -> Seal:
        return Seal(
            size=self.size,
            sha256=self._hash.hexdigest(),
            segments=self._index,
            duration=self._last_us / 1_000_000,
            status=status,
            error=error,
            segment_table=[list(row) for row in self._table],
        )


# --- Reading -----------------------------------------------------------------------------------


class _Hashed:
    """Reads exactly, counting and hashing what it read."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, count: int) -> bytes:
        chunks = []
        wanted = count
        while wanted:
            chunk = self._stream.read(wanted)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        data = b"".join(chunks)
        self.hash.update(data)
        self.size += len(data)
        return data


def _read_uvarint(body: bytes, at: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        if at >= len(body) or shift > 63:
            raise ValueError("a record header runs past its segment")
        byte = body[at]
        at += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            return number, at
        shift += 7


def parse_header(raw: bytes) -> dict:
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise RecordingBroken("its header is not JSON") from exc
    if not isinstance(meta, dict) or meta.get("format") != VERSION:
        raise RecordingBroken("its header is not a WGREC v1 header")
    return meta


class RecordingReader:
    """Reads a recording once, front to back: `records()` yields every record after checking its
    segment's tag, and raises RecordingBroken at the first segment that fails, at a file that ends
    without its last segment, or at bytes after it. `size` and `sha256` are of what was read.

    With `key=None` only the layout is checked (lengths, header, segment count), no tags.

    A file whose header says `"cipher": "none"` (an export) is refused as "not an encrypted
    recording" unless the caller asks for an export with `export=True`; an export reader refuses
    anything else. An export has no tags: its reader checks only its layout, that every segment
    is stored, and that the segments number what its header's `source` says. That proves nothing
    against a forger (the header is plain text too); an export is verified only against the
    original's sealed SHA-256 (docs/recordings.md, "Export")."""

    def __init__(self, stream: BinaryIO, key: bytes | None, *, export: bool = False) -> None:
        self._in = _Hashed(stream)
        self._aead = AESGCM(key) if key is not None else None
        preamble = self._in.read(len(PREAMBLE) + 4)
        if len(preamble) < len(PREAMBLE) + 4 or preamble[: len(MAGIC)] != MAGIC:
            raise RecordingBroken("not a WGREC recording (no magic)")
        if preamble[len(MAGIC)] != VERSION:
            raise RecordingBroken(f"WGREC version {preamble[len(MAGIC)]} is not supported")
        (length,) = _U32.unpack_from(preamble, len(PREAMBLE))
        if length > MAX_HEADER:
            raise RecordingBroken("its header is longer than 64 KiB")
        raw = self._in.read(length)
        if len(raw) < length:
            raise RecordingBroken("the file ends inside its header")
        self.header = parse_header(raw)
        self.aad = preamble + raw
        self.export = export
        cipher = self.header.get("cipher")
        if export:
            if cipher != "none" or self.header.get("compression") != "none":
                raise RecordingBroken("not an export (its header names a cipher)")
            source = self.header.get("source")
            segments = source.get("segments") if isinstance(source, dict) else None
            if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
                raise RecordingBroken("its header has no source segment count")
            self._source_segments = segments
        else:
            if cipher == "none":
                raise RecordingBroken(
                    'not an encrypted recording (its header says "cipher": "none": an '
                    "export, which is verified only against the original's sealed SHA-256)"
                )
            if cipher != CIPHER:
                raise RecordingBroken(f"unknown cipher {self.header.get('cipher')!r}")
            try:
                self._prefix = bytes.fromhex(self.header["nonce_prefix"])
            except (KeyError, TypeError, ValueError) as exc:
                raise RecordingBroken("its header has no nonce prefix") from exc
            if len(self._prefix) != NONCE_PREFIX_BYTES:
                raise RecordingBroken("its header has no nonce prefix")
        self.segments = 0
        self.last_seen = False

    @property
    def size(self) -> int:
        return self._in.size

    @property
    def sha256(self) -> str:
        return self._in.hash.hexdigest()

    def _segment_at(self) -> tuple[bytes, bool] | None:
        """The next segment's bytes and whether the file ends right after it; None at the end."""
        if not hasattr(self, "_ahead"):
            self._ahead = self._in.read(4)
        prefix = self._ahead
        if not prefix:
            return None
        if len(prefix) < 4:
            raise RecordingBroken(f"the file ends inside segment {self.segments}'s length")
        (length,) = _U32.unpack(prefix)
        if length > MAX_SEALED:
            raise RecordingBroken(f"segment {self.segments} claims {length} bytes (at most 2 MiB)")
        sealed = self._in.read(length)
        if len(sealed) < length:
            raise RecordingBroken(f"the file ends inside segment {self.segments} (truncated)")
        self._ahead = self._in.read(4)
        return sealed, not self._ahead

    def plains(self) -> Iterator[tuple[int, bytes]]:
        """(index, plain) of every segment, tags checked (mode byte and body, not decompressed)."""
        while True:
            found = self._segment_at()
            if found is None:
                if self.export:
                    if self.segments != self._source_segments:
                        raise RecordingBroken(
                            f"the export has {self.segments} segments, its header's source "
                            f"{self._source_segments}"
                        )
                    return
                if not self.last_seen:
                    raise RecordingBroken(
                        f"the file ends after segment {self.segments - 1} without its last "
                        "segment (truncated, or the recording was interrupted)"
                    )
                return
            sealed, at_end = found
            index = self.segments
            if self.last_seen:
                raise RecordingBroken(f"bytes follow the last segment ({index - 1})")
            if self.export:
                if sealed[:1] != MODE_STORED:
                    raise RecordingBroken(f"segment {index} of the export is not stored")
                plain = sealed
                at_end = index == self._source_segments - 1
            elif self._aead is None:
                plain = b""
            else:
                plain = self._open(sealed, index, at_end)
            self.segments += 1
            self.last_seen = at_end
            yield index, plain

    def _open(self, sealed: bytes, index: int, at_end: bool) -> bytes:
        try:
            return self._aead.decrypt(_nonce(self._prefix, index, at_end), sealed, self.aad)
        except InvalidTag:
            pass
        # Say why, when a flag explains it: the tag of the other flag holds.
        try:
            self._aead.decrypt(_nonce(self._prefix, index, not at_end), sealed, self.aad)
        except InvalidTag:
            raise RecordingBroken(
                f"segment {index} fails its tag (altered, moved, from another recording, or "
                "not under this key)"
            ) from None
        if at_end:
            raise RecordingBroken(
                f"the file ends after segment {index}, which is not the last (truncated)"
            )
        raise RecordingBroken(f"bytes follow the last segment ({index})")

    def records(self) -> Iterator[Record]:
        offset = 0
        last_kind = None
        decompressor = zstandard.ZstdDecompressor()
        for index, plain in self.plains():
            if self._aead is None and not self.export:
                continue
            body = unpack_plain(plain, index, decompressor)
            at = 0
            try:
                while at < len(body):
                    kind = body[at]
                    participant, at = _read_uvarint(body, at + 1)
                    delta, at = _read_uvarint(body, at)
                    length, at = _read_uvarint(body, at)
                    if at + length > len(body):
                        raise ValueError("a record runs past its segment")
                    offset += delta
                    yield Record(kind, participant, offset, body[at : at + length])
                    last_kind = kind
                    at += length
            except ValueError as exc:
                raise RecordingBroken(f"segment {index}: {exc}") from exc
        if self.export and last_kind != Kind.END:
            raise RecordingBroken("the export does not end with its END record")

    def verify(self) -> Seal:
        """Read to the end (every tag, the last flag); the seal of what was read."""
        duration_us = 0
        for record in self.records():
            duration_us = record.offset_us
        return Seal(
            size=self.size,
            sha256=self.sha256,
            segments=self.segments,
            duration=duration_us / 1_000_000,
        )


def unpack_plain(plain: bytes, index: int, decompressor=None) -> bytes:
    mode, body = plain[:1], plain[1:]
    if mode == MODE_STORED:
        return body
    if mode == MODE_ZSTD:
        decompressor = decompressor or zstandard.ZstdDecompressor()
        try:
            return decompressor.decompress(body, max_output_size=MAX_PLAIN)
        except zstandard.ZstdError as exc:
            raise RecordingBroken(f"segment {index} does not decompress: {exc}") from exc
    raise RecordingBroken(f"segment {index} has unknown mode {mode!r}")


# --- Export ------------------------------------------------------------------------------------


def export_recording(stream: BinaryIO, key: bytes, out: Output) -> dict:
    """Decrypt a recording into the export form (docs/recordings.md, "Export"): the same layout,
    `"cipher": "none"`, `"compression": "none"`, each segment `u32 length, b"S", body`. The
    source is read twice (`stream` must seek): verified whole
    first, so a broken one raises RecordingBroken before anything is written. The manifest
    returned names the source's size, SHA-256, segments and duration."""
    seal = RecordingReader(stream, key).verify()
    stream.seek(0)
    reader = RecordingReader(stream, key)
    header = {**reader.header, "cipher": "none", "compression": "none"}
    header["source"] = {"size": seal.size, "sha256": seal.sha256, "segments": seal.segments}
    digest = hashlib.sha256()
    size = 0

    def write(data: bytes) -> None:
        nonlocal size
        out.write(data)
        digest.update(data)
        size += len(data)

    write(encode_header(header))
    decompressor = zstandard.ZstdDecompressor()
    for index, plain in reader.plains():
        body = unpack_plain(plain, index, decompressor)
        write(_U32.pack(len(body) + 1) + MODE_STORED + body)
    if reader.sha256 != seal.sha256:
        raise RecordingBroken("the recording changed while it was exported")
    return {
        "recording": reader.header.get("recording"),
        "session": reader.header.get("session"),
        "participant": reader.header.get("participant"),
        "role": reader.header.get("role"),
        "started_at": reader.header.get("started_at"),
        "duration_seconds": seal.duration,
        "source": {"size": seal.size, "sha256": seal.sha256, "segments": seal.segments},
        "export": {"size": size, "sha256": digest.hexdigest(), "format": "WGREC v1 export"},
    }
