"""After-download actions (``mailAfterDownload``): what to do on the server once the file is safe.

========================  ==========================================================  ========
value                     IMAP                                                        POP3
========================  ==========================================================  ========
``none``                  nothing                                                     nothing
``seen`` (default)        UID STORE +FLAGS (\\Seen)                                    nothing
``flag <FLAG>``           UID STORE +FLAGS (<FLAG>), e.g. ``flag $Ingested``           nothing
``move <FOLDER>``         UID MOVE (or COPY + \\Deleted + UID EXPUNGE); FOLDER created  refused
``delete``                UID STORE \\Deleted + UID EXPUNGE (UIDPLUS) or EXPUNGE       DELE
========================  ==========================================================  ========

The download runs an action only after the file is complete, fsynced and renamed, so a crash
at any point leaves the message on the server.  What a mailbox can do is read from its
:class:`~mailingest.mailbox.protocol.Capability` set, never from the protocol's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailingest.errors import ConfigError
from mailingest.mailbox.protocol import Capability, Mailbox
from mailingest.mailbox.refs import MessageRef

KINDS = ("none", "seen", "flag", "move", "delete")


@dataclass(frozen=True)
class AfterDownload:
    kind: str = "seen"
    argument: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> AfterDownload:
        """:raises ConfigError: unknown action, or a missing/extra argument."""
        words = str(text or "seen").split(None, 1)
        kind = words[0].lower()
        argument = words[1].strip() if len(words) > 1 else None
        if kind not in KINDS:
            raise ConfigError(f"mailAfterDownload {text!r}: use one of none, seen, flag <FLAG>, move <FOLDER>, delete")
        if kind in ("flag", "move") and not argument:
            raise ConfigError(f"mailAfterDownload {kind} needs an argument, e.g. "
                              f"{'flag $Ingested' if kind == 'flag' else 'move Archive'}")
        if kind not in ("flag", "move") and argument:
            raise ConfigError(f"mailAfterDownload {kind} takes no argument (got {argument!r})")
        return cls(kind=kind, argument=argument)

    def __str__(self) -> str:
        return f"{self.kind} {self.argument}" if self.argument else self.kind

    def changes(self, capabilities: frozenset[Capability]) -> bool:
        """True when this action modifies a mailbox that has ``capabilities`` (flags need FLAGS)."""
        if self.kind in ("seen", "flag"):
            return Capability.FLAGS in capabilities
        return self.kind != "none"

    def check_capabilities(self, capabilities: frozenset[Capability]) -> None:
        """:raises ConfigError: the action cannot be done there (``move`` without folders)."""
        if self.kind == "move" and Capability.FOLDERS not in capabilities:
            raise ConfigError("mailAfterDownload move needs IMAP: POP3 has no folders (use delete or none)")

    @property
    def groups(self) -> bool:
        """True when :py:meth:`apply_to_group` may do it for many messages at once: setting a flag
        on a set of UIDs is one ``UID STORE`` with the same outcome as one per message (move and
        delete keep per-message bookkeeping: folders created, POP3 deletions pending until QUIT)."""
        return self.kind in ("seen", "flag")

    def apply_to_group(self, mailbox: Mailbox, refs: Sequence[MessageRef]) -> None:
        """Run a flag action (:py:attr:`groups`) for several downloaded messages at once.

        :raises MailError: the server refused or the connection broke (for the whole group).
        """
        if not self.groups:
            raise ValueError(f"mailAfterDownload {self} is applied one message at a time")
        if self.changes(mailbox.capabilities) and refs:
            mailbox.add_flags(list(refs), [self._flag()])

    def _flag(self) -> str:
        return "\\Seen" if self.kind == "seen" else self.argument or ""

    def apply(self, mailbox: Mailbox, ref: MessageRef) -> None:
        """Run the action for one downloaded message.

        :raises MailError: the server refused or the connection broke.
        """
        if not self.changes(mailbox.capabilities):
            return
        if self.groups:
            mailbox.add_flags([ref], [self._flag()])
        elif self.kind == "move":
            mailbox.move([ref], self.argument or "")
        elif self.kind == "delete":
            mailbox.delete([ref])
