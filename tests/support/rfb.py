"""A minimal RFB 3.8 viewer for tests: version, VNC authentication, ServerInit, one update.

It is written from RFC 6143 independently of the server code, so the relay and the desktops are
checked against the protocol rather than against themselves.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

SECURITY_VNC = 2


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """RFC 6143 7.2.2: DES-encrypt the 16-byte challenge with the password as key.

    VNC feeds the key to DES with each byte's bits mirrored (a quirk of its d3des).
    """
    key = bytes(_reverse_bits(b) for b in password.encode("latin-1")[:8].ljust(8, b"\0"))
    # ECB on one 16-byte challenge is what the protocol specifies.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(challenge) + encryptor.finalize()


class AuthFailed(Exception):
    pass


@dataclass
class ServerInit:
    width: int
    height: int
    name: str


class RfbClient:
    """RFB over anything with `async recv() -> bytes` and `async send(bytes)`."""

    def __init__(self, connection, timeout: float = 10.0):
        self.connection = connection
        self.timeout = timeout
        self.buffer = bytearray()

    async def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = await asyncio.wait_for(self.connection.recv(), self.timeout)
            self.buffer += chunk
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def send(self, data: bytes) -> None:
        await self.connection.send(data)

    async def handshake(self, password: str) -> ServerInit:
        version = await self.read(12)
        assert version.startswith(b"RFB 003.00"), version
        await self.send(b"RFB 003.008\n")
        (count,) = struct.unpack("!B", await self.read(1))
        if count == 0:
            raise AuthFailed(await self._reason())
        types = await self.read(count)
        assert SECURITY_VNC in types, types
        await self.send(bytes([SECURITY_VNC]))
        challenge = await self.read(16)
        await self.send(vnc_auth_response(password, challenge))
        (result,) = struct.unpack("!I", await self.read(4))
        if result != 0:
            raise AuthFailed(await self._reason())
        await self.send(b"\x01")  # ClientInit: shared, so other viewers stay connected
        width, height = struct.unpack("!HH", await self.read(4))
        await self.read(16)  # pixel format
        (name_length,) = struct.unpack("!I", await self.read(4))
        name = (await self.read(name_length)).decode("latin-1")
        return ServerInit(width=width, height=height, name=name)

    async def _reason(self) -> str:
        (length,) = struct.unpack("!I", await self.read(4))
        return (await self.read(length)).decode("latin-1")

    async def framebuffer_update(self, width: int, height: int) -> int:
        """Ask for the whole screen; the number of rectangles of the update that comes back."""
        await self.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        while True:
            (message_type,) = struct.unpack("!B", await self.read(1))
            if message_type == 0:  # FramebufferUpdate
                _padding, rectangles = struct.unpack("!BH", await self.read(3))
                return rectangles
            if message_type == 2:  # Bell: no payload
                continue
            raise AssertionError(f"unexpected server message {message_type}")

    async def capture(self, width: int, height: int) -> bytes:
        """The whole screen as 32-bit pixels (blue, green, red, unused), row by row: what a
        viewer would show, asked for in the Raw encoding so no decoder is needed."""
        pixel_format = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        await self.send(b"\x00\x00\x00\x00" + pixel_format)  # SetPixelFormat
        await self.send(struct.pack("!BBHi", 2, 0, 1, 0))  # SetEncodings: Raw only
        await self.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        screen = bytearray(width * height * 4)
        covered = 0
        while covered < width * height:
            (message_type,) = struct.unpack("!B", await self.read(1))
            if message_type == 2:  # Bell
                continue
            if message_type == 3:  # ServerCutText: the desktop's clipboard
                (length,) = struct.unpack("!3xI", await self.read(7))
                await self.read(length)
                continue
            assert message_type == 0, f"unexpected server message {message_type}"
            _padding, rectangles = struct.unpack("!BH", await self.read(3))
            for _ in range(rectangles):
                x, y, w, h, encoding = struct.unpack("!HHHHi", await self.read(12))
                assert encoding == 0, f"asked for Raw, got encoding {encoding}"
                pixels = await self.read(w * h * 4)
                for row in range(h):
                    start = ((y + row) * width + x) * 4
                    screen[start : start + w * 4] = pixels[row * w * 4 : (row + 1) * w * 4]
                covered += w * h
        return bytes(screen)
