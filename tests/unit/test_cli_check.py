"""``mailingest check --config``: reading an sr3 config the way sr3 reads it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from mailingest.cli import check as cli_check


def _args(config: str, url: str = "") -> argparse.Namespace:
    values = {option: None for option in cli_check.FLAGS}
    return argparse.Namespace(config=config, url=url or None, timeout=None, **values)


# sr3 3.3.1's Config.parse_file never closes the config file (sarracenia/config/__init__.py:1545).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_check_reads_a_subscriber_config_with_a_subtopic_line(tmp_path: Path) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "sr3" / "subscribe" / "checkdownload.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("broker amqp://feeder:unit-test@localhost/\nexchange xs_mail\nsubtopic #\n"
                      f"directory {tmp_path}\ncallback mailingest.download\nmailCaFile /etc/private-ca.pem\n")

    options = cli_check._options(_args("subscribe/checkdownload", "imaps://alice@mail.example.com/"))

    assert options.pollUrl == "imaps://alice@mail.example.com/"
    assert options.mailCaFile == "/etc/private-ca.pem"


@pytest.mark.parametrize("password", ["Slash/Query?Pct%Tail", "Two Words#Hash", "Q?At@Colon:"])
def test_check_never_shows_a_credentials_line_sr3_would_log_in_full(tmp_path, monkeypatch, caplog, capsys,
                                                                    password):
    import logging

    import sarracenia.config

    from tests.secret_scan import register_secret

    register_secret(password)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(sarracenia.config.Config, "credentials", None)  # read again, as in a new process
    conf = tmp_path / "sr3" / "credentials.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"imaps://alice:fine@mail.example.com/\nimaps://carol:{password}@mail.example.com:55791/\n")
    caplog.set_level(logging.DEBUG)

    options = cli_check._options(_args("", "imaps://alice@mail.example.com/"))
    from mailingest.mailbox.account import resolve_account
    from mailingest.mailbox.credentials_file import CredentialsFile

    account = resolve_account(options.pollUrl, CredentialsFile.of(options).database())

    assert account.password == "fine"
    shown = caplog.text + "".join(capsys.readouterr())
    assert f"{conf} line 2 (imaps://...) is ignored" in shown
    assert "sr3 itself logs this line in full when a flow starts" in shown  # check says so before a flow does
    pieces = [piece for piece in password.replace("/", " ").replace("?", " ").replace("#", " ").replace(
        "@", " ").replace(":", " ").replace("%", " ").split()]
    assert not [piece for piece in pieces if piece in shown], shown
