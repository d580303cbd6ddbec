"""Clients for the Socket.IO tests: the official ones, and raw ones that speak the wire format."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass, field

import httpx
import socketio
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.processes import ROOT
from tests.support.providers import LoopbackServer, openai_chunk, openai_event, openai_usage

CLIENT_SCRIPT = ROOT / "tests" / "socketio_server" / "client.js"
WAIT = 15.0  # seconds a test waits for something that should happen within milliseconds


@dataclass(frozen=True)
class Server:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/socket.io/"

    @property
    def ws_endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/"


class NodeClient:
    """npm socket.io-client in a node process: what it sees arrives as JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.seen: list[dict] = []  # every report, in order
        self.unread: list[dict] = []  # reports no next() has returned yet

    @classmethod
    async def start(cls, url: str, options: dict | None = None) -> NodeClient:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(CLIENT_SCRIPT),
            url,
            json.dumps(options or {}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            start_new_session=True,
        )
        return cls(process)

    async def next(self, *events: str, timeout: float = WAIT) -> dict:
        """The first unread report of one of `events` (the client decides their order)."""
        for report in self.unread:
            if report["event"] in events:
                self.unread.remove(report)
                return report
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise EOFError(f"node client exited; saw {self.seen}")
                report = json.loads(line)
                self.seen.append(report)
                if report["event"] in events:
                    return report
                self.unread.append(report)

    async def stream(self, until, *, timeout: float = WAIT) -> list[dict]:
        """RECEIVE_STREAM payloads up to and including the first one `until` accepts."""
        payloads = []
        while True:
            report = await self.next("RECEIVE_STREAM", timeout=timeout)
            payloads.append(report["payload"])
            if until(report["payload"]):
                return payloads

    async def command(self, **command) -> None:
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def emit(self, name: str, *args, ack: bool = False, binary: bool = False) -> None:
        await self.command(emit=name, args=list(args), ack=ack, binary=binary)

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            await self.process.wait()


@dataclass
class PythonClient:
    """python-socketio's AsyncClient on its default options, recording what it receives."""

    client: socketio.AsyncClient = field(default_factory=socketio.AsyncClient)
    streams: asyncio.Queue = field(default_factory=asyncio.Queue)
    registered: asyncio.Queue = field(default_factory=asyncio.Queue)
    errors: asyncio.Queue = field(default_factory=asyncio.Queue)
    disconnects: asyncio.Queue = field(default_factory=asyncio.Queue)

    def __post_init__(self):
        self.client.on("RECEIVE_STREAM", self.streams.put)
        self.client.on("registered", self.registered.put)
        self.client.on("connect_error", self.errors.put)
        self.client.on("disconnect", self.disconnects.put)

    async def stream(self, until, *, timeout: float = WAIT) -> list[dict]:
        payloads = []
        async with asyncio.timeout(timeout):
            while True:
                payloads.append(await self.streams.get())
                if until(payloads[-1]):
                    return payloads


class Polling:
    """A raw Engine.IO long-polling client, one request at a time, to any server given."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.sid = ""

    @staticmethod
    def query(**extra) -> dict:
        return {"EIO": "4", "transport": "polling", **extra}

    async def open(self, server: Server) -> dict:
        response = await self.http.get(server.endpoint, params=self.query())
        assert response.status_code == 200, response.text
        assert response.text[0] == "0"
        opening = json.loads(response.text[1:])
        self.sid = opening["sid"]
        return opening

    async def get(self, server: Server, *, timeout: float = WAIT) -> httpx.Response:
        return await self.http.get(
            server.endpoint, params=self.query(sid=self.sid), timeout=timeout
        )

    async def packets(self, server: Server, *, timeout: float = WAIT) -> list[str]:
        response = await self.get(server, timeout=timeout)
        assert response.status_code == 200, response.text
        return response.text.split("\x1e")

    async def collect(self, *servers: Server, count: int) -> list[str]:
        """Poll the servers in turn until `count` packets have arrived (the server may send
        several per response)."""
        received: list[str] = []
        for server in itertools.cycle(servers):
            received += await self.packets(server)
            if len(received) >= count:
                return received

    async def post(self, server: Server, *packets: str | bytes) -> httpx.Response:
        body = packets[0] if isinstance(packets[0], bytes) else "\x1e".join(packets).encode()
        return await self.http.post(server.endpoint, params=self.query(sid=self.sid), content=body)


def event_packet(name: str, *args, ack_id: int | None = None) -> str:
    return "42" + ("" if ack_id is None else str(ack_id)) + json.dumps([name, *args])


def parse_event(packet: str) -> list:
    assert packet.startswith("42"), packet
    return json.loads(packet[2:])


GATE = "<gate>"  # in a GatedOpenAI reply: wait here until the test opens the gate


class GatedOpenAI(LoopbackServer):
    """An OpenAI-compatible streaming server on loopback whose replies can pause at GATE.

    It runs in a thread of its own, so a Daphne subprocess reaches it like any provider. While a
    reply waits at the gate it writes a comment line every few milliseconds: writing is how a
    server notices that its client (the turn) has gone.
    """

    def __init__(self):
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.replies: deque[list[str]] = deque()
        self.gate = threading.Event()
        self.client_left = threading.Event()

    def script(self, *replies: list[str]) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        self.replies.clear()
        self.gate.clear()
        self.client_left.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        events = self.replies.popleft() if self.replies else []
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for event in events:
                while event == GATE and not self.gate.is_set():
                    await response.write(b": waiting\n\n")
                    await asyncio.sleep(0.01)
                if event != GATE:
                    await response.write(event.encode())
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            self.client_left.set()
        return response


def openai_text(*pieces: str) -> list[str]:
    """A streamed Chat Completions answer, one content chunk per piece (GATE passes through)."""
    events = [openai_chunk({"role": "assistant", "content": ""})]
    events += [piece if piece == GATE else openai_chunk({"content": piece}) for piece in pieces]
    return [*events, openai_chunk(finish="stop"), openai_usage(10, 5), openai_event("[DONE]")]


def websocket_url(server: Server, **query) -> str:
    """The Engine.IO v4 WebSocket endpoint of `server` with `query` added."""
    params = "&".join(f"{key}={value}" for key, value in {"EIO": 4, **query}.items())
    return f"{server.ws_endpoint}?{params}"


async def receive(websocket) -> str:
    return await asyncio.wait_for(websocket.recv(), WAIT)


async def close_code_after(server: Server, packet: str) -> int:
    """Connect over WebSocket, join the default namespace, send `packet`: the close code."""
    async with connect(websocket_url(server, transport="websocket")) as websocket:
        await receive(websocket)
        await websocket.send("40")
        await receive(websocket)
        await websocket.send(packet)
        try:
            answer = await receive(websocket)
        except ConnectionClosed as closed:
            return closed.rcvd.code
    raise AssertionError(f"the server answered {answer!r} instead of closing")
