"""Is the decoder's output unchanged?  The corpus decoded by two versions of the code, compared.

    python -m bench.decodesame --base DIR/plugins [--tmp /dev/shm]

Every corpus message is decoded with ``decode_file`` (no fsync) by the code in ``--base`` and
by this tree's, each in a process of its own, into two scratch directories; then every file
written is compared byte for byte, except ``metadata.json``, which is compared parsed (its
layout may change, its content may not), with the thread address OpenSSL puts at the start of
its error messages (``405737A2D07F0000:error:...``) left out.  Prints each difference and exits 1 when there is one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.corpus import MESSAGES

_OPENSSL_THREAD = re.compile(rb"\b[0-9A-F]{8,16}:error:")

_CHILD = r"""
import sys
from pathlib import Path
from mailingest.mime.layout import DecodeSettings, decode_file
messages, out = Path(sys.argv[1]), Path(sys.argv[2])
settings = DecodeSettings(fsync=False)
for eml in sorted(messages.rglob("*.eml")):
    target = out / str(eml.relative_to(messages)).replace("/", "__")
    try:
        decode_file(str(eml), str(target), settings=settings)
    except Exception as exc:  # a refusal is output too
        target.mkdir(parents=True, exist_ok=True)
        (target / "refused.txt").write_text("%s: %s" % (type(exc).__name__, exc))
"""


def decode_with(plugins: str, out: Path) -> None:
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugins, repo]))
    subprocess.run([sys.executable, "-c", _CHILD, str(MESSAGES), str(out)], env=env, check=True, timeout=3600)


def tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def differences(base: Path, new: Path) -> list[str]:
    old_files, new_files = tree(base), tree(new)
    found = ["only in base: %s" % name for name in sorted(old_files.keys() - new_files.keys())]
    found += ["only in new: %s" % name for name in sorted(new_files.keys() - old_files.keys())]
    for name in sorted(old_files.keys() & new_files.keys()):
        before, after = old_files[name].read_bytes(), new_files[name].read_bytes()
        if name.endswith("metadata.json"):
            if json.loads(_OPENSSL_THREAD.sub(b"?:error:", before)) != json.loads(
                    _OPENSSL_THREAD.sub(b"?:error:", after)):
                found.append("metadata differs: %s" % name)
        elif before != after:
            found.append("bytes differ: %s" % name)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", metavar="PLUGINS", required=True)
    parser.add_argument("--tmp", metavar="DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="decodesame-", dir=args.tmp) as tmp:
        base, new = Path(tmp) / "base", Path(tmp) / "new"
        decode_with(args.base, base)
        decode_with(str(Path(__file__).resolve().parents[1] / "plugins"), new)
        found = differences(base, new)
        for line in found:
            print(line)
        print("%d files compared, %d differences" % (len(tree(base)), len(found)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
