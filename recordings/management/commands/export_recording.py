"""Decrypt a recording to its export form (docs/recordings.md, "Export"), with a manifest.

`export_recording PATH -o FILE` writes FILE (the WGREC v1 layout with `"cipher": "none"`, readable
without any Workgate key) and FILE.manifest.json (the source's size, SHA-256 and segments, the
export's own). The source is verified whole first: a broken recording exports nothing. The data
key is read as verify_recording reads it (`--key-file`, or `<PATH>.key`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recordings.format import RecordingBroken, export_recording
from recordings.management.commands.verify_recording import read_key


class Command(BaseCommand):
    help = "Decrypt a recording to its documented export form, with a manifest beside it."

    def add_arguments(self, parser):
        parser.add_argument("path", metavar="PATH")
        parser.add_argument("-o", "--output", required=True, metavar="FILE")
        parser.add_argument("--key-file", help="the wrapped data key (default: PATH.key)")

    def handle(self, *args, path, output, key_file=None, **options):
        source = Path(path)
        target = Path(output)
        partial = target.with_name(target.name + ".partial")
        try:
            key = read_key(source, key_file)
            with open(source, "rb") as stream, open(partial, "xb") as out:
                manifest = export_recording(stream, key, out)
        except (RecordingBroken, OSError) as exc:
            partial.unlink(missing_ok=True)
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            raise CommandError(f"{source}: not exported: {reason}", returncode=1) from exc
        os.replace(partial, target)
        manifest_path = target.with_name(target.name + ".manifest.json")
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        self.stdout.write(
            f"{source}: exported to {target} ({manifest['export']['size']} bytes, sha256 "
            f"{manifest['export']['sha256']}); manifest {manifest_path}"
        )
