"""Specification of ``callback mailingest.decode``, driven the way sr3 drives it.

Options come from ``sarracenia.config.no_file_config()`` + ``finalize`` (which builds the
publisher, so notices get relPath/baseUrl); the callback is loaded with ``load_library``;
``after_work`` gets a SimpleNamespace worklist.  No broker connection is made.
"""

import base64
import hashlib
import json
import os
import types
from email.message import EmailMessage

import pytest
import sarracenia
import sarracenia.config
import sarracenia.flowcb

from mailingest.errors import ConfigError

IMAP_MAIL = {"folder": "INBOX", "uidvalidity": 1700000000, "uid": 101, "size": 0,
             "messageId": "<m1@example.org>", "subject": "obs", "from": "obs@example.org",
             "date": "2026-11-02T10:00:00+00:00"}


def options(base, **settings):
    """A decode subscriber's options; it decodes in its own process (the decode process has
    specs of its own, tests/unit/test_decode_process.py) unless *settings* say otherwise."""
    settings.setdefault("mailDecodeProcess", "off")
    o = sarracenia.config.no_file_config()
    o.component = "subscribe"
    o.config = "t"
    o.action = "foreground"
    o.no = 0
    o.post_broker = "amqp://u:p@localhost/"
    o.post_exchange = "xs_mail_parts"
    o.post_baseDir = str(base)
    o.post_baseUrl = "https://data.example.com/mail"
    o.settings = {"mailingest.decode": {k: str(v) for k, v in settings.items()}}
    o.finalize("subscribe", "t")
    return o


def load(o):
    return sarracenia.flowcb.load_library("mailingest.decode", o)


def sample(names=("obs.csv",), subject="obs") -> bytes:
    msg = EmailMessage()
    msg["From"] = "obs@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@example.org>"
    msg.set_content("hourly observations\n")
    for name in names:
        msg.add_attachment(b"time,temp\n00:00,1.5\n", maintype="text", subtype="csv", filename=name)
    return msg.as_bytes()


def downloaded(o, base, rel, raw, mail=IMAP_MAIL):
    """A notice as Download leaves it in worklist.ok: the file is on disk, identity set."""
    path = os.path.join(str(base), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(raw)
    msg = sarracenia.Message.fromFileData(path, o, sarracenia.stat(path))
    if mail is not None:
        msg["mail"] = dict(mail)
    return msg


def worklist(*ok):
    return types.SimpleNamespace(ok=list(ok), incoming=[], rejected=[], failed=[], directories_ok=[])


def sha512(path):
    with open(path, "rb") as fh:
        return base64.b64encode(hashlib.sha512(fh.read()).digest()).decode()


@pytest.fixture
def base(tmp_path):
    return tmp_path / "mail"


def test_every_file_written_is_announced_with_its_parent(base):
    o = options(base)
    parent = downloaded(o, base, "INBOX/1700000000.101.eml", sample())
    raw_before = (base / "INBOX/1700000000.101.eml").read_bytes()
    wl = worklist(parent)
    load(o).after_work(wl)
    assert wl.ok[0] is parent
    assert parent["mailDecode"] == {"status": "decoded", "files": 3, "announced": 3,
                                    "directory": "1700000000.101.parts"}
    parts = {m["relPath"]: m for m in wl.ok[1:]}
    assert sorted(parts) == ["INBOX/1700000000.101.parts/body.txt",
                             "INBOX/1700000000.101.parts/metadata.json",
                             "INBOX/1700000000.101.parts/obs.csv"]
    csv = parts["INBOX/1700000000.101.parts/obs.csv"]
    path = base / "INBOX/1700000000.101.parts/obs.csv"
    assert path.read_bytes() == b"time,temp\n00:00,1.5\n"
    assert csv["baseUrl"] == "https://data.example.com/mail"
    assert csv["identity"] == {"method": "sha512", "value": sha512(path)}
    assert csv["size"] == path.stat().st_size
    assert csv["mailParent"] == {"relPath": "INBOX/1700000000.101.eml", "identity": parent["identity"],
                                 "mail": IMAP_MAIL}
    assert csv["mailPart"] == {"kind": "part", "originalName": "obs.csv", "contentType": "text/csv",
                               "disposition": "attachment", "contentId": None}
    assert (base / "INBOX/1700000000.101.eml").read_bytes() == raw_before
    meta = json.loads((base / "INBOX/1700000000.101.parts/metadata.json").read_text("utf-8"))
    assert meta["mail"] == IMAP_MAIL and meta["subject"] == "obs"


def test_pop3_identity_is_copied_as_is(base):
    o = options(base)
    pop = {"uidl": "000001a2", "size": 10, "messageId": "<m1@example.org>"}
    parent = downloaded(o, base, "000001a2.eml", sample(), mail=pop)
    wl = worklist(parent)
    load(o).after_work(wl)
    assert all(m["mailParent"]["mail"] == pop for m in wl.ok[1:])


def test_a_message_over_a_part_bound_is_decoded_partially_and_says_so(base):
    o = options(base, mailDecodeMaxParts=2)
    parent = downloaded(o, base, "INBOX/1.5.eml", sample(names=("a.csv", "b.csv")))
    wl = worklist(parent)
    load(o).after_work(wl)
    assert parent["mailDecode"]["status"] == "partial"
    assert "max_parts (2)" in parent["mailDecode"]["bounds"][0]
    kinds = [m["mailPart"]["kind"] for m in wl.ok[1:]]
    assert "raw" in kinds and "metadata" in kinds


def test_a_message_over_the_byte_bound_is_posted_as_not_decoded_with_one_clear_line(base, caplog):
    o = options(base, mailDecodeMaxBytes=100)
    parent = downloaded(o, base, "INBOX/1.5.eml", sample(names=("a.csv", "b.csv")))
    wl = worklist(parent)
    load(o).after_work(wl)
    assert wl.ok == [parent]
    assert parent["mailDecode"]["status"] == "not-decoded"
    assert "max_decoded_bytes" in parent["mailDecode"]["reason"]
    assert os.listdir(base / "INBOX") == ["1.5.eml"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "INBOX/1.5.eml" in errors[0].getMessage() and "uid 101" in errors[0].getMessage()


def test_an_unexpected_error_is_contained_to_its_message(base, caplog, monkeypatch):
    import mailingest.decodeprocess as decode_module

    o = options(base)
    bad = downloaded(o, base, "INBOX/1.1.eml", sample())
    good = downloaded(o, base, "INBOX/1.2.eml", sample())
    real = decode_module.decode_file

    def flaky(path, *args, **kwargs):
        if path.endswith("1.1.eml"):
            raise RuntimeError("boom")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode_module, "decode_file", flaky)
    wl = worklist(bad, good)
    load(o).after_work(wl)
    assert bad["mailDecode"]["status"] == "not-decoded"
    assert good["mailDecode"]["status"] == "decoded"
    assert len(wl.ok) == 2 + 3
    assert "boom" in caplog.text and "Traceback" in caplog.text


def test_post_retries_and_other_files_are_left_alone(base):
    o = options(base)
    retry = downloaded(o, base, "INBOX/1.1.eml", sample())
    retry["post_failures"] = 1
    other = downloaded(o, base, "INBOX/notes.txt", b"plain file")
    wl = worklist(retry, other)
    load(o).after_work(wl)
    assert wl.ok == [retry, other]
    assert "mailDecode" not in retry and "mailDecode" not in other
    assert sorted(os.listdir(base / "INBOX")) == ["1.1.eml", "notes.txt"]


def test_defects_are_warnings_naming_the_message(base, caplog):
    o = options(base)
    broken = (b"Subject: broken\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
              b"Content-Type: text/plain\n\nno closing boundary\n")
    wl = worklist(downloaded(o, base, "INBOX/1.7.eml", broken))
    load(o).after_work(wl)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("CloseBoundaryNotFoundDefect" in w and "INBOX/1.7.eml" in w and "uid 101" in w
               for w in warnings)


def test_attachments_with_hostile_names_are_announced_inside_the_parts_directory(base):
    o = options(base)
    wl = worklist(downloaded(o, base, "INBOX/1.8.eml", sample(names=("../../../etc/cron.d/x.csv",
                                                                     "x.csv"))))
    load(o).after_work(wl)
    rels = sorted(m["relPath"] for m in wl.ok[1:])
    assert "INBOX/1.8.parts/x.csv" in rels and "INBOX/1.8.parts/x-2.csv" in rels
    assert all(r.startswith("INBOX/1.8.parts/") for r in rels)


def test_options_are_declared_with_defaults_and_settings_apply(base):
    cb = load(options(base))
    limits = (cb.o.mailDecodeMaxDepth, cb.o.mailDecodeMaxParts, cb.o.mailDecodeMaxBytes)
    assert limits == (200, 2000, 256 * 1024 ** 2)
    assert (cb.o.mailDecodeHtml, cb.o.mailDecodeUuencode, cb.o.mailDecodeFsync) == (True, True, True)
    cb = load(options(base, mailDecodeMaxBytes="10m", mailDecodeMaxDepth=4, mailDecodeHtml="off"))
    assert cb.settings.limits.max_decoded_bytes == 10_000_000          # sr3: m is decimal
    assert cb.settings.limits.max_depth == 4
    assert cb.settings.html is False
    cb = load(options(base, mailDecodeMaxBytes="10mb"))
    assert cb.settings.limits.max_decoded_bytes == 10 * 1024 ** 2      # ... mb / Mi binary


def test_a_bad_limit_fails_at_start(base):
    with pytest.raises(ConfigError, match="mailDecode"):
        load(options(base, mailDecodeMaxParts=0))


@pytest.mark.parametrize("order, refused", [
    (["mailingest.download", "mailingest.decode"], False),
    (["mailingest.decode"], False),
    (["mailingest.decode", "mailingest.download"], True),
    (["mailingest.decode.Decode", "sample.other", "mailingest.download.Download"], True),
])
def test_a_decode_named_before_the_download_fails_at_start(base, order, refused):
    o = options(base)
    o.plugins_late = order
    if refused:
        with pytest.raises(ConfigError, match="put it after"):
            load(o)
    else:
        load(o)


def test_metrics(base):
    o = options(base)
    cb = load(o)
    cb.after_work(worklist(downloaded(o, base, "INBOX/1.9.eml", sample())))
    assert cb.metricsReport() == {"decoded": 1, "partial": 0, "notDecoded": 0, "filesWritten": 3,
                                  "filesAnnounced": 3, "defects": 0, "reannounced": 0, "recovered": 0,
                                  "decodeProcessDied": 0}


@pytest.mark.parametrize("choice, announced", [
    ("attachments", ["obs.csv", "wind.csv"]),
    ("attachments,metadata", ["metadata.json", "obs.csv", "wind.csv"]),
    ("bodies", ["body.txt"]),
    ("none", []),
    ("all", ["body.txt", "metadata.json", "obs.csv", "wind.csv"]),
])
def test_mail_decode_announce_chooses_which_files_get_a_notice_and_every_file_is_still_written(
        base, choice, announced):
    o = options(base, mailDecodeAnnounce=choice)
    parent = downloaded(o, base, "INBOX/1.5.eml", sample(names=("obs.csv", "wind.csv")))
    wl = worklist(parent)
    cb = load(o)
    cb.after_work(wl)
    assert sorted(os.path.basename(m["relPath"]) for m in wl.ok[1:]) == announced
    assert sorted(os.listdir(base / "INBOX/1.5.parts")) == ["body.txt", "metadata.json", "obs.csv", "wind.csv"]
    assert parent["mailDecode"]["files"] == 4 and parent["mailDecode"]["announced"] == len(announced)
    assert (cb.metrics["filesWritten"], cb.metrics["filesAnnounced"]) == (4, len(announced))


def test_an_unknown_mail_decode_announce_word_fails_at_start(base):
    with pytest.raises(ConfigError, match="mailDecodeAnnounce csv: use all, none, or some of"):
        load(options(base, mailDecodeAnnounce="attachments,csv"))


def test_smime_verdicts_go_into_the_eml_notice_and_tnef_files_are_announced_as_attachments(base, tmp_path):
    from tests import smime_pki
    from tests.fuzz.generators import tnef_file, tnef_stream, winmail

    pki = smime_pki.make_pki()
    key = tmp_path / "key.pem"
    key.write_bytes(pki.recipient.pem())
    o = options(base, mailSmimeKeyFile=str(key), mailDecodeAnnounce="attachments")
    sealed = downloaded(o, base, "INBOX/1.1.eml", smime_pki.encrypted(pki.recipient))
    outlook = downloaded(o, base, "INBOX/1.2.eml", winmail(tnef_stream(tnef_file("long report name.pdf", b"%PDF"))))
    wl = worklist(sealed, outlook)
    load(o).after_work(wl)
    assert [v["verdict"] for v in sealed["mailDecode"]["smime"]] == ["decrypted"]
    assert "smime" not in outlook["mailDecode"]
    announced = {m["relPath"]: m["mailPart"] for m in wl.ok[2:]}
    assert announced["INBOX/1.1.parts/report.pdf"]["kind"] == "part"
    assert announced["INBOX/1.2.parts/long report name.pdf"]["originalName"] == "long report name.pdf"
    assert not any(path.endswith(("winmail.dat", "body.txt", "metadata.json")) for path in announced)


def test_the_smime_decryption_key_may_live_in_the_keyring_and_a_missing_entry_fails_at_start(base):
    import keyring

    from tests import smime_pki
    from tests.keyring_backend import MemoryKeyring

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        pki = smime_pki.make_pki()
        with pytest.raises(ConfigError, match="mailSmimeKeyring ingest: no key in the keyring.*keyring set"):
            load(options(base, mailSmimeKeyring="ingest"))
        backend.set_password("mailingest-smime-key", "ingest", pki.recipient.pem().decode())
        o = options(base, mailSmimeKeyring="ingest", mailDecodeAnnounce="attachments")
        sealed = downloaded(o, base, "INBOX/1.1.eml", smime_pki.encrypted(pki.recipient))
        wl = worklist(sealed)
        load(o).after_work(wl)
        assert [v["verdict"] for v in sealed["mailDecode"]["smime"]] == ["decrypted"]
        assert "INBOX/1.1.parts/report.pdf" in {m["relPath"] for m in wl.ok[1:]}
    finally:
        keyring.set_keyring(previous)


def test_the_smime_and_tnef_options_apply_and_a_bad_key_file_fails_at_start(base, tmp_path):
    cb = load(options(base))
    assert cb.settings.formats.tnef and not cb.settings.formats.tnef_keep and cb.settings.formats.smime is not None
    cb = load(options(base, mailDecodeTnef="off", mailDecodeTnefKeep="on", mailDecodeSmime="off"))
    assert (cb.settings.formats.tnef, cb.settings.formats.tnef_keep, cb.settings.formats.smime) == (False, True, None)
    with pytest.raises(ConfigError, match="mailSmimeKeyFile"):
        load(options(base, mailSmimeKeyFile=str(tmp_path / "missing.pem")))


def test_a_pass_makes_its_files_and_directories_durable_together_before_they_are_announced(base, monkeypatch):
    import mailingest.decodeprocess as decode_module

    groups = []
    monkeypatch.setattr(decode_module, "sync_together",
                        lambda files, directories: groups.append((list(files), list(directories))))
    o = options(base)
    first = downloaded(o, base, "INBOX/1700000000.101.eml", sample())
    second = downloaded(o, base, "INBOX/1700000000.102.eml", sample(("other.csv",)))
    wl = worklist(first, second)
    load(o).after_work(wl)
    assert len(groups) == 1  # one group for the whole pass, not one per file or message
    files, directories = groups[0]
    announced = {os.path.join(str(base), m["relPath"]) for m in wl.ok[2:]}
    assert set(files) == announced
    assert set(directories) == {str(base / "INBOX"), str(base / "INBOX/1700000000.101.parts"),
                                str(base / "INBOX/1700000000.102.parts")}


def test_with_mail_decode_fsync_off_nothing_is_synced(base, monkeypatch):
    import mailingest.decodeprocess as decode_module

    groups = []
    monkeypatch.setattr(decode_module, "sync_together", lambda *args: groups.append(args))
    o = options(base, mailDecodeFsync="off")
    wl = worklist(downloaded(o, base, "INBOX/1700000000.101.eml", sample()))
    load(o).after_work(wl)
    assert len(wl.ok) == 4 and groups == []


#: fields that differ from one call to the next whoever builds the notice
RUN_TIMES = ("pubTime",)


@pytest.mark.parametrize("method", ["sha512", "md5", "cod,sha512", "arbitrary"])
def test_each_file_notice_is_field_for_field_what_sr3_builds_for_the_same_file(base, method):
    o = options(base)
    o.identity_method = method
    if method == "arbitrary":
        o.identity_arbitrary_value = "x"
    parent = downloaded(o, base, "INBOX/1700000000.101.eml", sample(("a.csv", "b.csv")))
    wl = worklist(parent)
    load(o).after_work(wl)
    assert len(wl.ok) == 5
    for notice in wl.ok[1:]:
        path = os.path.join(str(base), notice["relPath"])
        lstat = sarracenia.stat(path)
        by_info = sarracenia.Message.fromFileInfo(path, o, lstat)
        by_data = sarracenia.Message.fromFileData(path, o, lstat)
        ours = {k: v for k, v in notice.items() if k not in ("mailParent", "mailPart")}
        assert set(ours) == set(by_data) == set(by_info) | {"identity"}
        for key in set(by_data) - set(RUN_TIMES):
            assert ours[key] == by_data[key], key
        for key in set(by_info) - set(RUN_TIMES):
            assert ours[key] == by_info[key], key
        assert ours["size"] == os.path.getsize(path)


def test_the_files_of_one_message_share_one_copy_of_its_parent_apart_from_the_eml_notice(base):
    o = options(base)
    parent = downloaded(o, base, "INBOX/1700000000.101.eml", sample(("a.csv",)))
    wl = worklist(parent)
    load(o).after_work(wl)
    parents = [m["mailParent"] for m in wl.ok[1:]]
    assert all(p is parents[0] for p in parents)
    parent["mail"]["uid"] = 999
    parent["identity"]["value"] = "changed"
    assert parents[0]["mail"] == IMAP_MAIL
    assert parents[0]["identity"] != parent["identity"]
    assert parents[0]["mail"] is not parent["mail"]


def test_a_decode_worker_freezes_the_heap_loaded_at_start_and_collects_what_comes_later(base):
    import gc

    cb = load(options(base))
    gc.unfreeze()
    cb.on_start()
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
    assert gc.get_freeze_count() == frozen
