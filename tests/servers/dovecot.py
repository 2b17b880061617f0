"""A private Dovecot (IMAP + POP3) on loopback, for integration tests and benchmarks.

Everything lives under *base_dir*: a generated ``dovecot.conf`` (``/etc/dovecot`` is never
read), the ``state/`` dir, a trustme CA and server certificate, the
passwd-files and ``dovecot.log``.  Four free loopback ports serve imap, imaps, pop3, pop3s.

Example::

    with DovecotServer(tmp / "dovecot") as dovecot:
        account = dovecot.new_account()
        account.deliver(raw_message_bytes)
        assert account.fetch_raw(uid=1) == raw_message_bytes   # CRLF input

Facts worth knowing:

* Mail is stored as given, and IMAP/POP3 always *send* CRLF: a message delivered with bare
  LF line ends comes back with CRLF (a lone CR is left alone).  Deliver CRLF bytes when a
  test compares checksums, or compare with :py:meth:`DovecotServer.fetch_raw` (the server's
  own view of the message).  NUL-free 8-bit bodies come back byte for byte.
* UIDs are assigned in delivery order; POP3 UIDLs are ``%08x%08x`` (UID, UIDVALIDITY) in
  lowercase hex, although the setting reads ``%08Xu%08Xv``.
* The ``run/`` dir (Dovecot's ``base_dir``, with its Unix sockets) is a short temporary
  directory (``/tmp/mi-dovecot-XXXX/run``), because a socket path may not exceed 108 bytes;
  :py:meth:`DovecotServer.close` removes it.
* Dovecot refuses mail access as root.  Run as root, mail belongs to ``nobody`` and the
  Maildirs live where ``nobody`` can reach them (``base_dir/mail``, or a private temporary
  directory linked from there when *base_dir* sits in a 0700 tree such as pytest's).
* With ``allow_plaintext_auth=False`` every login without TLS is refused (loopback clients
  are "secured" to Dovecot, so this takes a deny passdb; see :py:mod:`.dovecot_conf`).
* The log's login line reads ``imap-login: Info: Login: user=<alice>, ..., TLS, session=<..>``
  when the session used TLS (STARTTLS or implicit), and ``..., secured, ...`` when it did not.
* :py:meth:`DovecotServer.doveadm` (hence :py:meth:`DovecotServer.create_folder`) needs the
  server running: doveadm asks Dovecot's auth process for the user.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import dovecot_conf, maildir, process
from .debian import ensure_packages
from .ports import LOOPBACK, free_ports

logger = logging.getLogger(__name__)

PACKAGES = {"dovecot": "dovecot-core", "doveadm": "dovecot-core"}
DEBIAN_PACKAGES = {"/usr/lib/dovecot/imap": "dovecot-imapd", "/usr/lib/dovecot/pop3": "dovecot-pop3d"}
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@-]*$")
_FORBIDDEN_IN_PASSWORD = set(":\r\n\t")


@dataclass(frozen=True)
class DovecotAccount:
    """A user of a :py:class:`DovecotServer`, with shortcuts bound to that user."""

    user: str
    password: str = field(repr=False)
    server: DovecotServer = field(repr=False)

    def deliver(self, raw: bytes, folder: str = "INBOX", seen: bool = False,
                internaldate: float | None = None) -> Path:
        return self.server.deliver(self.user, raw, folder, seen=seen, internaldate=internaldate)

    def maildir(self, folder: str = "INBOX") -> Path:
        return self.server.maildir(self.user, folder)

    def fetch_raw(self, uid: int, folder: str = "INBOX") -> bytes:
        return self.server.fetch_raw(self.user, self.password, folder, uid)


class DovecotServer(process.ManagedServer):
    """A private Dovecot instance; see the module docstring.

    :param base_dir: directory for config, state, logs and (usually) mail; created if needed.
    :param starttls: offer STARTTLS on the plain imap/pop3 ports; with False, TLS is only
        available on the imaps/pop3s ports.
    :param allow_plaintext_auth: with False, any login without TLS is refused.
    :param auth_mechanisms: the ``auth_mechanisms`` setting (add e.g. ``xoauth2``).
    :param extra_config: appended verbatim to ``dovecot.conf`` (extra passdbs, settings).
    :param mail_parent: keep the Maildirs in a private directory made under this one (linked
        from ``base_dir/mail``) and removed on :py:meth:`close`; e.g. a tmpfs, see
        :py:func:`memory_tmp`.
    """

    def __init__(self, base_dir: Path, *, starttls: bool = True, allow_plaintext_auth: bool = True,
                 auth_mechanisms: str = "plain login", extra_config: str = "",
                 mail_parent: Path | None = None, max_userip_connections: int = 100) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.starttls = starttls
        self.allow_plaintext_auth = allow_plaintext_auth
        self.auth_mechanisms = auth_mechanisms
        self.extra_config = extra_config
        #: Dovecot's mail_max_userip_connections (IMAP and POP3 each)
        self.max_userip_connections = max_userip_connections
        self.host = LOOPBACK
        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = free_ports(4, self.host)
        self.config_path = self.base_dir / "dovecot.conf"
        self.passwd_dir = self.base_dir / "passwd.d"  # one passwd-file per user (see add_user)
        self.log_path = self.base_dir / "dovecot.log"
        self.ca_pem = self.base_dir / "tls" / "ca.pem"
        self.server_pem = self.base_dir / "tls" / "server.pem"
        self.console_path = self.base_dir / "dovecot.console.log"
        # Dovecot's Unix sockets live in run_dir; a path under pytest-xdist's deep temporary tree
        # would exceed the 108-byte limit of a socket path, so it is a short private directory.
        self._short_dir = Path(tempfile.mkdtemp(prefix="mi-dovecot-"))
        self._short_dir.chmod(0o755)
        self.run_dir = self._short_dir / "run"
        self.state_dir = self.base_dir / "state"
        self._as_root = os.geteuid() == 0
        self.mail_uid, self.mail_gid = _mail_identity(self._as_root)
        self._owner = (self.mail_uid, self.mail_gid) if self._as_root else None
        self._process: process.ServerProcess | None = None
        self._external_mail_root: Path | None = None
        self._write_tls()
        self.mail_root = self._make_mail_root(mail_parent)
        process.register(self)

    def __repr__(self) -> str:
        return f"DovecotServer(imap={self.host}:{self.imap_port}, base_dir={str(self.base_dir)!r})"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start Dovecot and wait for the IMAP and POP3 greetings.

        :raises RuntimeError: naming the ports, the log file and its last lines.
        """
        if self._process is not None and self._process.running():
            return
        debian = DEBIAN_PACKAGES if Path("/etc/debian_version").exists() else {}
        binaries = ensure_packages({**PACKAGES, **debian})
        for directory in (self.run_dir, self.state_dir):
            directory.mkdir(exist_ok=True)
        (self.run_dir / "master.pid").unlink(missing_ok=True)  # ours is stopped: the pid is stale
        self.passwd_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())
        self._process = process.ServerProcess(
            "Dovecot", [binaries["dovecot"], "-F", "-c", str(self.config_path)],
            console_path=self.console_path, cwd=self.base_dir)
        started = time.monotonic()
        self._process.start()
        why = process.wait_for(self._ready, self._process, timeout)
        if why is not None:
            self.stop()
            raise RuntimeError(
                f"Dovecot did not start on {self.host} (imap port {self.imap_port}, pop3 port "
                f"{self.pop3_port}): {why}. Config: {self.config_path}. Log: {self.log_path}, "
                f"last lines:\n{process.tail(self.log_path)}\n"
                f"Console output ({self.console_path}):\n{process.tail(self.console_path)}")
        logger.info("Dovecot ready in %.1fs: %r", time.monotonic() - started, self)

    def _ready(self) -> bool:
        return (process.greeting(self.host, self.imap_port, b"* OK")
                and process.greeting(self.host, self.pop3_port, b"+OK"))

    def stop(self) -> None:
        """Stop Dovecot and every process it started (idempotent)."""
        if self._process is not None:
            self._process.stop()

    def restart(self) -> None:
        """Stop and start again on the same ports; drops every client connection."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and remove the run directory and (if it lives outside *base_dir*) the mail."""
        self.stop()
        shutil.rmtree(self._short_dir, ignore_errors=True)
        if self._external_mail_root is not None:
            shutil.rmtree(self._external_mail_root, ignore_errors=True)
            self._external_mail_root = None
        super().close()

    def wait_for_log(self, *needles: str, timeout: float = 10.0) -> str:
        """Return the first line of :py:attr:`log_path` containing every one of *needles*.

        Dovecot writes its log asynchronously, so poll for a short while.

        :raises TimeoutError: with the last log lines, when no line matches in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            for line in text.splitlines():
                if all(needle in line for needle in needles):
                    return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"No line with {needles!r} in {self.log_path} after {timeout:.0f}s; "
                                   f"last lines:\n{process.tail(self.log_path)}")
            time.sleep(0.05)

    def session_titles(self, user: str) -> list[str]:
        """The process titles of *user*'s IMAP and POP3 sessions right now (``verbose_proctitle``:
        they name the command each session is in, e.g. ``[alice 127.0.0.1 IDLE]``)."""
        prefixes = [f"mailingest-{self.imap_port}/{protocol} [{user} ".encode() for protocol in ("imap", "pop3")]
        titles = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmdline.read_bytes().rstrip(b"\0")
            except OSError:
                continue  # the process just went away
            if any(prefix in title for prefix in prefixes):
                titles.append(title.decode(errors="replace"))
        return titles

    def sessions(self, user: str, *, idle: bool = False) -> int:
        """How many IMAP and POP3 sessions of *user* are open right now (only those in IDLE with
        *idle*)."""
        return sum(1 for title in self.session_titles(user) if not idle or title.endswith(" IDLE]"))

    def idle_sessions(self, user: str) -> int:
        """How many IMAP sessions of *user* are in IDLE right now."""
        return self.sessions(user, idle=True)

    # -- configuration ---------------------------------------------------------------------

    def config_text(self) -> str:
        """The complete ``dovecot.conf`` for this instance, *extra_config* included."""
        return dovecot_conf.render(self)

    def _write_tls(self) -> None:
        import trustme  # test dependency, imported only when a server is made

        self.ca_pem.parent.mkdir(exist_ok=True)
        ca = trustme.CA(organization_name="mailingest test CA")
        ca.cert_pem.write_to_path(str(self.ca_pem))
        self.server_pem.touch(mode=0o600)
        cert = ca.issue_cert("localhost", self.host)
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.server_pem))

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_pem))

    # -- users and mail --------------------------------------------------------------------

    def add_user(self, user: str, password: str) -> None:
        """Add *user*, or change an existing user's password; create the Maildir if missing.

        Takes effect at the next login, also while Dovecot runs.
        """
        if not _USER_RE.match(user):
            raise ValueError(f"User name {user!r} is not usable: use letters, digits and ._+@-")
        if _FORBIDDEN_IN_PASSWORD & set(password) or not password:
            raise ValueError("The password must be non-empty without ':', tab or line breaks "
                             "(passwd-file format)")
        # One file per user: Dovecot stats a passwd-file at most once per second, so a
        # shared file would hide a user added in the same second as the previous login.
        path = self.passwd_dir / user
        replacing = path.exists()
        staging = self.passwd_dir / f".{user}.tmp"
        staging.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        if replacing:  # make the mtime move, then let Dovecot's once-a-second check pass
            stamp = max(time.time(), int(path.stat().st_mtime) + 1.0)
            os.utime(staging, (stamp, stamp))
        os.replace(staging, path)
        if replacing:
            time.sleep(1.02 - time.time() % 1)
        maildir.make_dirs([self.mail_root / user], self._owner)
        maildir.make_maildir(self.maildir(user), self._owner)

    def new_account(self, prefix: str = "user") -> DovecotAccount:
        """Add a user with a random name and password (tests stay isolated without restarts)."""
        account = DovecotAccount(f"{prefix}{secrets.token_hex(4)}", secrets.token_urlsafe(12), self)
        self.add_user(account.user, account.password)
        return account

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """The Maildir++ directory of *folder*: INBOX is ``~/Maildir``, others ``~/Maildir/.A.B``."""
        return maildir.folder_dir(self.mail_root / user / "Maildir", folder)

    def create_folder(self, user: str, folder: str) -> None:
        """Create *folder* for *user* and subscribe it (no error if it exists)."""
        self.maildir(user, folder)  # validates the name
        try:
            self.doveadm("mailbox", "create", "-s", "-u", user, folder)
        except RuntimeError as exc:
            if "exists" not in str(exc):
                raise
            self.doveadm("mailbox", "subscribe", "-u", user, folder)

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX", seen: bool = False,
                internaldate: float | None = None) -> Path:
        """Write *raw* into the folder's Maildir as Dovecot's LDA would; return the file.

        The bytes are stored untouched (deliver CRLF text to get the same bytes back over
        IMAP).  New mail goes to ``new/``; with *seen* it goes to ``cur/`` flagged ``\\Seen``.
        *internaldate* (epoch seconds) becomes the file mtime, which Dovecot reports as
        INTERNALDATE.  The path changes once an IMAP client SELECTs the folder read-write
        (Dovecot moves the file from ``new/`` to ``cur/``).
        """
        return maildir.write_message(self._folder_dir(user, folder), raw, seen=seen,
                                     internaldate=internaldate, owner=self._owner)

    def deliver_many(self, user: str, raws: Iterable[bytes], folder: str = "INBOX",
                     seen: bool = False) -> int:
        """Deliver many messages quickly (100,000 take seconds); return how many."""
        directory = self._folder_dir(user, folder)
        count = 0
        for raw in raws:
            maildir.write_message(directory, raw, seen=seen, owner=self._owner)
            count += 1
        return count

    def fetch_raw(self, user: str, password: str, folder: str, uid: int) -> bytes:
        """The server's raw message (``BODY.PEEK[]`` over imaps; never sets \\Seen)."""
        from imapclient import IMAPClient

        with IMAPClient(self.host, port=self.imaps_port, ssl=True,
                        ssl_context=self.client_ssl_context(), timeout=30) as client:
            client.login(user, password)
            client.select_folder(folder, readonly=True)
            response = client.fetch([uid], ["BODY.PEEK[]"])
        if uid not in response:
            raise LookupError(f"No message with UID {uid} in {folder!r} of {user!r}")
        body: bytes = response[uid][b"BODY[]"]
        return body

    def doveadm(self, *args: str) -> str:
        """Run doveadm with this instance's config and return its output.

        Pass arguments separately, or as one shell-like string
        (``"mailbox status -u alice messages unseen INBOX"``).

        :raises RuntimeError: on a non-zero exit, with doveadm's error output.
        """
        argv = shlex.split(args[0]) if len(args) == 1 and " " in args[0] else list(args)
        binary = ensure_packages({"doveadm": PACKAGES["doveadm"]})["doveadm"]
        command = [binary, "-c", str(self.config_path), *argv]
        if not self.config_path.exists():
            self.config_path.write_text(self.config_text())
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(argv)} failed with exit code {done.returncode}: "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    # -- mail storage --------------------------------------------------------------------

    def _folder_dir(self, user: str, folder: str) -> Path:
        directory = self.maildir(user, folder)
        if not (directory / "new").is_dir():
            if folder.upper() == "INBOX":
                maildir.make_dirs([self.mail_root / user], self._owner)
                maildir.make_maildir(directory, self._owner)
            else:
                self.create_folder(user, folder)
        return directory

    def _make_mail_root(self, mail_parent: Path | None) -> Path:
        link = self.base_dir / "mail"
        if mail_parent is None and (not self._as_root or maildir.others_can_traverse(self.base_dir)):
            root = link
            root.mkdir(mode=0o700, exist_ok=True)
        else:
            # Asked for (mail_parent), or mail processes run as nobody and cannot enter base_dir
            # (e.g. pytest's 0700 tree): keep mail in a private directory that nobody can reach,
            # linked from here.
            root = Path(tempfile.mkdtemp(prefix="mailingest-dovecot-mail-", dir=mail_parent))
            if self._as_root and not maildir.others_can_traverse(root.parent):
                shutil.rmtree(root)
                raise RuntimeError(f"Dovecot's mail user cannot reach {root.parent}: set TMPDIR to a "
                                   "directory with o+x on every parent")
            self._external_mail_root = root
            if link.is_symlink():
                link.unlink()
            link.symlink_to(root, target_is_directory=True)
        if self._as_root:
            os.chown(root, self.mail_uid, self.mail_gid)
        return root


#: Free space a tmpfs needs to hold the test mail (100,000 small messages take ~0.5 GiB there).
MEMORY_TMP_MIN_FREE = 2 << 30


def memory_tmp() -> Path | None:
    """``/dev/shm`` when it is a writable tmpfs with room for the test mail, else None.

    The suite keeps its Maildirs there: writing and removing 100,000 message files on a busy
    disk took minutes; in memory it takes seconds, and no test depends on the disk.
    """
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    if not os.access(shm, os.W_OK | os.X_OK) or stats.f_bavail * stats.f_frsize < MEMORY_TMP_MIN_FREE:
        return None
    return shm


def _mail_identity(as_root: bool) -> tuple[int, int]:
    if not as_root:
        return os.geteuid(), os.getegid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid
