"""A real desktop's RFB bytes, both ways, through a recording sink and back: Xvfb + x11vnc,
viewed with the suite's own RFB viewer (tests/support/rfb.py) for a few seconds of updates."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recordings.format import Kind, RecordingReader, new_data_key
from recordings.storage import DirectoryStore
from recordings.writer import RecordingSink
from tests.support.desktops import needs_desktops
from tests.support.processes import free_port, running, wait_for
from tests.support.rfb import RfbClient

pytestmark = [needs_desktops, pytest.mark.integration]

PASSWORD = "rec-pass"
X11_SOCKETS = Path("/tmp/.X11-unix")  # noqa: S108 - where X servers listen, not a temporary file
ID = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"


class TappedConnection:
    """The viewer's connection, every chunk put into the recording on its way, as the relay
    will: desktop -> viewer before it is delivered, viewer -> desktop before it is sent."""

    def __init__(self, reader, writer, sink: RecordingSink) -> None:
        self.reader, self.writer, self.sink = reader, writer, sink
        self.to_viewer = bytearray()
        self.to_desktop = bytearray()

    async def recv(self) -> bytes:
        data = await self.reader.read(65_536)
        assert data, "the desktop closed the connection"
        self.sink.put(Kind.TO_VIEWER, 1, data)
        self.to_viewer += data
        return data

    async def send(self, data: bytes) -> None:
        self.sink.put(Kind.TO_DESKTOP, 1, data)
        self.to_desktop += data
        self.writer.write(data)
        await self.writer.drain()


def free_display() -> int:
    return next(n for n in range(140, 400) if not (X11_SOCKETS / f"X{n}").exists())


async def test_a_real_desktops_bytes_read_back_exactly(tmp_path):
    display = free_display()
    port = free_port()
    xvfb = ["Xvfb", f":{display}", "-screen", "0", "640x480x24", "-nolisten", "tcp"]
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["x11vnc", "-storepasswd", PASSWORD, str(passwd)], check=True, capture_output=True
    )
    x11vnc = ["x11vnc", "-display", f":{display}", "-rfbport", port, "-localhost"]
    x11vnc += ["-rfbauth", passwd, "-shared", "-forever", "-quiet"]
    log = open(tmp_path / "desktop.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "DISPLAY": f":{display}"}
    try:
        with running(xvfb, stdout=log, stderr=log):
            wait_for(lambda: (X11_SOCKETS / f"X{display}").exists())
            with running(x11vnc, port=port, stdout=log, stderr=log, env=env):
                store = DirectoryStore(tmp_path / "recordings")
                key = new_data_key()
                spool = store.open_spool(ID, datetime.now(UTC))
                sink = RecordingSink(spool, key=key, recording_id=ID)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                connection = TappedConnection(reader, writer, sink)
                viewer = RfbClient(connection)
                init = await viewer.handshake(PASSWORD)
                screens = [await viewer.capture(init.width, init.height)]
                for _ in range(4):
                    await asyncio.sleep(0.5)
                    screens.append(await viewer.capture(init.width, init.height))
                writer.close()
                seal = await sink.close({"closed_by": "viewer"})
    finally:
        log.close()

    assert seal.status == "complete"
    assert store.size_and_sha256(spool.object_key) == (seal.size, seal.sha256)
    with open(store.path(spool.object_key), "rb") as stream:
        records = list(RecordingReader(stream, key).records())
    to_viewer = b"".join(r.data for r in records if r.kind == Kind.TO_VIEWER)
    to_desktop = b"".join(r.data for r in records if r.kind == Kind.TO_DESKTOP)
    assert to_viewer == bytes(connection.to_viewer)
    assert to_desktop == bytes(connection.to_desktop)
    assert to_viewer.startswith(b"RFB 003.008\n")
    assert len(to_viewer) > 5 * 640 * 480 * 4  # five whole screens in Raw
    assert seal.duration >= 2.0
