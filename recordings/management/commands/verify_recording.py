"""Check recording files: every segment's tag, the last-segment flag, nothing after it.

For now recordings are named by path (the `Recording` rows come with issue 22's next part, which
adds the size and SHA-256 sealed in the audit chain to the comparison). The data key is read, in
its wrapped form (as the `data_key` column holds it), from `--key-file`, or else from the file
`<PATH>.key` beside each recording.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from recordings.format import RecordingBroken, RecordingReader, unwrap_data_key


def read_key(path: Path, key_file: str | None) -> bytes:
    source = Path(key_file) if key_file else path.with_name(path.name + ".key")
    try:
        return unwrap_data_key(source.read_text().strip())
    except OSError as exc:
        raise RecordingBroken(f"no data key ({source}: {exc.strerror})") from exc
    except (ImproperlyConfigured, ValueError) as exc:
        raise RecordingBroken(f"its data key ({source}) does not unwrap: {exc}") from exc


class Command(BaseCommand):
    help = (
        "Read each recording once and check every segment's tag and the last-segment flag; "
        "print one line per broken recording and exit 1 when any is."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--key-file", help="the wrapped data key (default: PATH.key)")
        parser.add_argument(
            "--no-decrypt",
            action="store_true",
            help="check the layout only (header, segment lengths), not the tags",
        )

    def handle(self, *args, paths, key_file=None, no_decrypt=False, **options):
        broken = 0
        for name in paths:
            path = Path(name)
            try:
                with open(path, "rb") as stream:
                    key = None if no_decrypt else read_key(path, key_file)
                    seal = RecordingReader(stream, key).verify()
            except (RecordingBroken, OSError) as exc:
                reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
                self.stdout.write(f"{path}: BROKEN: {reason}")
                broken += 1
                continue
            if options["verbosity"] > 1:
                self.stdout.write(
                    f"{path}: ok, {seal.size} bytes, sha256 {seal.sha256}, "
                    f"{seal.segments} segments, {seal.duration:.1f} s"
                )
        if broken:
            raise CommandError(f"{broken} of {len(paths)} recordings are broken", returncode=1)
        self.stdout.write(f"{len(paths)} recordings verified: intact")
