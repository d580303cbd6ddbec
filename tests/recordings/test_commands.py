"""`verify_recording` and `export_recording` on recording files: what they print and how they
exit, and an export that reads without any Workgate key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from recordings.format import Kind, RecordingBroken, RecordingReader
from tests.recordings.traffic import segments_of, synthetic_rfb, write_recording

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recordings(tmp_path):
    """Three recordings: intact, one bit flipped, its last segment dropped."""
    paths = {}
    for name in ("intact", "flipped", "cut"):
        paths[name] = tmp_path / f"{name}.wgrec"
        write_recording(paths[name], synthetic_rfb(seconds=11, seed=len(name)))
    data = bytearray(paths["flipped"].read_bytes())
    data[-50] ^= 1  # in the last segment
    paths["flipped"].write_bytes(data)
    header, segments = segments_of(paths["cut"])
    paths["cut"].write_bytes(header + b"".join(segments[:-1]))
    return paths


def last_segment(path: Path) -> int:
    return len(segments_of(path)[1]) - 1


def run(*args: str) -> subprocess.CompletedProcess:
    """The command as an operator runs it: its exit code and output."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_intact_recordings_verify_and_exit_zero(recordings):
    out = StringIO()
    call_command("verify_recording", str(recordings["intact"]), stdout=out, verbosity=2)
    size = recordings["intact"].stat().st_size
    digest = hashlib.sha256(recordings["intact"].read_bytes()).hexdigest()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{recordings['intact']}: ok, {size} bytes, sha256 {digest}, ")
    assert lines[1] == "1 recordings verified: intact"


def test_each_broken_recording_gets_one_line_and_the_command_exits_one(recordings):
    flipped, cut = last_segment(recordings["flipped"]), last_segment(recordings["cut"])
    result = run("verify_recording", *(str(path) for path in recordings.values()))

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{recordings['flipped']}: BROKEN: segment {flipped} fails its tag (altered, moved, "
        "from another recording, or not under this key)",
        f"{recordings['cut']}: BROKEN: the file ends after segment {cut}, which is not the "
        "last (truncated)",
    ]
    assert "2 of 3 recordings are broken" in result.stderr


def test_a_missing_file_or_key_is_reported_as_broken(recordings, tmp_path):
    recordings["intact"].with_name("intact.wgrec.key").unlink()
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "verify_recording",
            str(tmp_path / "absent.wgrec"),
            str(recordings["intact"]),
            stdout=out,
        )
    assert caught.value.returncode == 1
    assert out.getvalue().splitlines() == [
        f"{tmp_path / 'absent.wgrec'}: BROKEN: No such file or directory",
        f"{recordings['intact']}: BROKEN: no data key ({recordings['intact']}.key: No such file "
        "or directory)",
    ]
    # The layout alone checks without the key.
    call_command("verify_recording", "--no-decrypt", str(recordings["intact"]), stdout=StringIO())


def test_export_decrypts_to_a_file_that_reads_without_a_key(recordings, tmp_path):
    source = recordings["intact"]
    target = tmp_path / "export.wgrec"
    result = run("export_recording", str(source), "-o", str(target))
    assert result.returncode == 0, result.stderr

    manifest = json.loads((tmp_path / "export.wgrec.manifest.json").read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["source"]["size"] == source.stat().st_size
    assert manifest["export"]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert result.stdout.strip().endswith(f"manifest {tmp_path / 'export.wgrec.manifest.json'}")
    with open(target, "rb") as stream:
        exported = RecordingReader(stream, None, export=True)
        records = list(exported.records())
    assert exported.header["cipher"] == "none"
    assert exported.header["source"]["sha256"] == manifest["source"]["sha256"]
    expected = synthetic_rfb(seconds=11, seed=len("intact"))
    assert [(r.kind, r.participant, r.offset_us, r.data) for r in records[:-1]] == expected
    assert records[-1].kind == Kind.END


def test_a_broken_recording_exports_nothing(recordings, tmp_path):
    target = tmp_path / "export.wgrec"
    result = run("export_recording", str(recordings["cut"]), "-o", str(target))
    assert result.returncode == 1
    assert f"not exported: the file ends after segment {last_segment(recordings['cut'])}, " in (
        result.stderr
    )
    assert list(tmp_path.glob("export*")) == []


@pytest.mark.parametrize("several", [False, True])
def test_an_edited_export_copied_over_its_recording_is_refused(tmp_path, several):
    """The forgery: export, edit the plain bytes (or drop segments), copy the export over the
    recording. `verify_recording` refuses it, with one segment and with several."""
    source = tmp_path / "rec.wgrec"
    chunks = synthetic_rfb(seconds=11, seed=7)
    write_recording(source, chunks if several else chunks[:8])  # the handshake: one segment
    exported = tmp_path / "x.wgrec"
    assert run("export_recording", str(source), "-o", str(exported)).returncode == 0
    header, segments = segments_of(exported)
    assert (len(segments) > 1) == several
    forged = bytearray(header + b"".join(segments))
    forged[len(header) + 20] ^= 1  # an edited byte of the first segment's records
    source.write_bytes(forged)
    refused = f"{source}: BROKEN: not an encrypted recording"

    result = run("verify_recording", str(source))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(refused)
    assert "1 of 1 recordings are broken" in result.stderr
    # Layout only (no key) refuses it too.
    result = run("verify_recording", "--no-decrypt", str(source))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(refused)

    if several:  # segments dropped from a multi-segment export
        source.write_bytes(header + segments[0])
        result = run("verify_recording", str(source))
        assert result.returncode == 1
        assert result.stdout.splitlines()[0].startswith(refused)
        # The export's own reader counts the segments against its header's source.
        with open(source, "rb") as stream, pytest.raises(RecordingBroken, match="has 1 segments"):
            RecordingReader(stream, None, export=True).verify()


def test_an_export_reader_refuses_an_encrypted_recording(recordings):
    with (
        open(recordings["intact"], "rb") as stream,
        pytest.raises(RecordingBroken, match="not an export"),
    ):
        RecordingReader(stream, None, export=True)
