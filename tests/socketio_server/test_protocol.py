"""The wire format on its own, and the single-process store with an injected clock."""

from __future__ import annotations

import pytest

from socketio_server import protocol, store
from socketio_server.protocol import (
    EnginePacketType,
    ProtocolError,
    SocketPacket,
    SocketPacketType,
    Timing,
    Transport,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("40", SocketPacket(SocketPacketType.CONNECT)),
        ('40{"token":"t"}', SocketPacket(SocketPacketType.CONNECT, data={"token": "t"})),
        ("40/admin,", SocketPacket(SocketPacketType.CONNECT, namespace="/admin")),
        ("40/admin", SocketPacket(SocketPacketType.CONNECT, namespace="/admin")),
        ('42["a",1]', SocketPacket(SocketPacketType.EVENT, data=["a", 1])),
        ('4212["a"]', SocketPacket(SocketPacketType.EVENT, data=["a"], ack_id=12)),
        (
            '42/chat,7["a"]',
            SocketPacket(SocketPacketType.EVENT, namespace="/chat", data=["a"], ack_id=7),
        ),
        ("43[]", SocketPacket(SocketPacketType.ACK, data=[])),
        ("41", SocketPacket(SocketPacketType.DISCONNECT)),
        (
            '451-["up",{"_placeholder":true,"num":0}]',
            SocketPacket(
                SocketPacketType.BINARY_EVENT,
                data=["up", {"_placeholder": True, "num": 0}],
                attachments=1,
            ),
        ),
    ],
)
def test_socket_packets_parse_as_the_reference_decoder_reads_them(text, expected):
    engine = protocol.parse_engine_packet(text)

    assert engine.type is EnginePacketType.MESSAGE
    assert protocol.parse_socket_packet(engine.data) == expected


@pytest.mark.parametrize(
    "text", ["", "7", "b", "4", "45[]", "45x-[]", '42"a"', "42[]", "41[]", "43{}", "42[1e999999"]
)
def test_what_is_not_a_packet_raises_protocol_error(text):
    with pytest.raises(ProtocolError):
        packet = protocol.parse_engine_packet(text)
        protocol.parse_socket_packet(packet.data)


def test_server_packets_encode_compactly():
    timing = Timing(ping_interval=25000, ping_timeout=20000)

    assert protocol.connect_ok("abc") == '40{"sid":"abc"}'
    assert protocol.connect_error("no", namespace="/x") == '44/x,{"message":"no"}'
    assert protocol.event("e", {"ü": 1}) == '42["e",{"ü":1}]'
    assert protocol.ack(3, {"ok": True}) == '433[{"ok":true}]'
    assert protocol.open_packet("s", upgrades=["websocket"], timing=timing) == (
        '0{"sid":"s","upgrades":["websocket"],"pingInterval":25000,'
        '"pingTimeout":20000,"maxPayload":1000000}'
    )
    assert protocol.encode_payload(["2", "40"]) == b"2\x1e40"
    parsed = protocol.parse_payload(b'3\x1e42["a"]', limit=2)
    assert [packet.encode() for packet in parsed] == ["3", '42["a"]']
    with pytest.raises(ProtocolError, match="more than 2 packets"):
        protocol.parse_payload(b"3\x1e3\x1e3", limit=2)


@pytest.fixture
def clock(monkeypatch):
    now = {"ms": 1_000_000}
    monkeypatch.setattr(store, "now_ms", lambda: now["ms"])
    return now


async def test_the_memory_store_expires_a_session_at_its_deadline(clock):
    memory = store.MemoryStore()
    session = store.EngineSession(
        sid="s1", transport=Transport.POLLING, ping_due=clock["ms"] + 10, deadline=clock["ms"] + 20
    )
    await memory.create(session)
    attached = await memory.attach_socket("s1", "sock", "7", limit=5)
    again = await memory.attach_socket("s1", "other", "7", limit=5)
    other_user = await memory.set_user("s1", "sock", "8", limit=5)

    clock["ms"] += 19
    alive = await memory.get("s1")
    await memory.heartbeat("s1", ping_due=clock["ms"] + 10, deadline=clock["ms"] + 20)
    clock["ms"] += 19
    still = await memory.socket("sock")
    clock["ms"] += 1

    assert (attached, again, other_user) == (store.Attach.DONE, store.Attach.CONFLICT, -1)
    assert alive is not None
    assert still == store.SocketRecord(socket_id="sock", sid="s1", user_id="7")
    assert await memory.get("s1") is None
    assert await memory.socket("sock") is None


async def test_the_memory_store_counts_an_accounts_sockets_until_they_end_or_expire(clock):
    """The embedded default (one process) holds an account to the same cap as Redis does."""
    memory = store.MemoryStore()
    for sid in ("s1", "s2", "s3", "s4", "s5"):
        deadline = clock["ms"] + (10 if sid == "s1" else 100)
        await memory.create(store.EngineSession(sid, Transport.POLLING, deadline, deadline))
    await memory.attach_socket("s1", "k1", "7", limit=2)
    await memory.attach_socket("s2", "k2", "7", limit=2)
    await memory.attach_socket("s3", "k3", "", limit=2)

    full_at_connect = await memory.attach_socket("s4", "k4", "7", limit=2)
    other_account = await memory.attach_socket("s4", "k4", "8", limit=2)
    full_at_register = await memory.set_user("s3", "k3", "7", limit=2)
    clock["ms"] += 10  # s1's client fell silent: its deadline passes
    after_expiry = await memory.set_user("s3", "k3", "7", limit=2)
    full_again = await memory.attach_socket("s5", "k5", "7", limit=2)  # s2 and s3 hold it
    await memory.detach_socket("s2", "k2")
    after_close = await memory.attach_socket("s5", "k5", "7", limit=2)

    assert (full_at_connect, full_at_register, full_again) == (store.Attach.FULL,) * 3
    assert (other_account, after_expiry, after_close) == (store.Attach.DONE,) * 3
