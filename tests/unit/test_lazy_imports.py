"""Start-up cost: what a process imports is what its work needs (issue 18, row 7a).

``mailingest decode`` is run once per message by shell loops, and every sr3 instance imports
the callbacks when it starts: libraries that only some paths use (S/MIME, IMAP, DNS, OAuth2
keys, the sr3 stack) are imported by the code that uses them, when it runs.  Each spec runs in a
fresh interpreter, so what the test session itself imported does not count.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: libraries (and our modules that load them) only some paths need
NETWORK = ("imapclient", "imaplib", "poplib", "dns", "dkim", "mailingest.mailbox.imap", "mailingest.mailbox.pop3")
KEYS = ("cryptography.x509", "jwt", "keyring")
PLAIN_MESSAGE = (b"From: a@example.org\nTo: b@example.org\nSubject: hello\nMessage-ID: <1@example.org>\n"
                 b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\n"
                 b"hi\n--B\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
                 b"JVBERi0xLjQK\n--B--\n")


def loaded_after(code: str, *watched: str) -> list[str]:
    """The modules of *watched* (a package counts with its submodules) that a fresh interpreter
    has loaded after running *code*."""
    probe = ("import json, sys\n%s\nprint(json.dumps(sorted({w for w in %r for m in sys.modules "
             "if m == w or m.startswith(w + '.')})))" % (code, watched))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_decoding_a_plain_message_on_the_command_line_loads_no_crypto_network_or_sr3_code(tmp_path: Path) -> None:
    message = tmp_path / "x.eml"
    message.write_bytes(PLAIN_MESSAGE)
    code = ("from mailingest.cli import main\nassert main(['decode', '-q', '--no-fsync', %r]) == 0"
            % str(message))
    assert loaded_after(code, "cryptography", "sarracenia", "subprocess", "tempfile", "mailingest.mime.smime",
                        "mailingest.mime.tnef", "mailingest.oauth2", "mailingest.settings", *NETWORK, *KEYS) == []
    assert (tmp_path / "x.parts" / "a.pdf").exists()


@pytest.mark.parametrize("callback", ["mailingest.poll", "mailingest.download", "mailingest.decode"])
def test_loading_a_callback_loads_no_dns_dkim_or_certificate_code(callback: str) -> None:
    """sr3 imports the callbacks at every instance start; DNS and DKIM are the screening's (loaded
    when a screening poll starts), X.509 the OAuth2 certificate's (loaded when one is read)."""
    assert loaded_after("import %s" % callback, "dns", "dkim", *KEYS) == []


def test_loading_the_decode_callback_loads_no_mail_server_code() -> None:
    assert loaded_after("import mailingest.decode", *NETWORK) == []
