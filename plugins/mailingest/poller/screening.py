"""Screening: the poll's sender and machine-mail check of each message before it is announced.

For each listed message the screener reads the message (``BODY.PEEK[]`` or ``RETR``: no flag
changes; only the header, ``BODY.PEEK[HEADER]`` or ``TOP n 0``, above ``mailTrustMaxSize``),
assesses it (:mod:`mailingest.verify.assess`) and decides what to do
(:func:`mailingest.trust.policy.decide`).  The caller acts on the decision, logs it and counts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailingest.errors import MessageGoneError
from mailingest.mailbox.refs import MessageRef
from mailingest.trust.policy import Decision, TrustPolicy, decide
from mailingest.verify.assess import Assessment, VerifySettings, assess
from mailingest.verify.dns import TxtResolver

logger = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 25 * 1000 * 1000
#: mailTrustHoldMax: how long a temperror is held before the announce/tag policies announce it
DEFAULT_HOLD_MAX = 3600.0


@dataclass(frozen=True)
class ScreenSettings:
    verify: VerifySettings = VerifySettings()
    policy: TrustPolicy = TrustPolicy()
    dns_servers: Sequence[str] = ()
    dns_timeout: float = 5.0
    #: messages larger than this are judged on their header alone
    max_size: int = DEFAULT_MAX_SIZE
    hold_max: float = DEFAULT_HOLD_MAX


@dataclass
class Screened:
    ref: MessageRef
    decision: Decision
    assessment: Assessment | None = None
    #: the notice's extra ``mail`` fields (sender, class, tags)
    fields: dict[str, Any] = field(default_factory=dict)


class Screener:
    def __init__(self, settings: ScreenSettings, resolver: TxtResolver | None = None) -> None:
        self.settings = settings
        self.resolver = resolver or TxtResolver(settings.dns_servers, settings.dns_timeout)

    def screen(self, mailbox: Any, ref: MessageRef, held_since: float | None = None) -> Screened | None:
        """The decision for *ref*, None when the message is gone from the server meanwhile;
        *held_since*: when a temperror first held it (time.time()), if it did.

        :raises MailError: the server could not be read (the cycle fails and is retried).
        """
        whole = self.settings.verify.dkim and (not self.settings.max_size or ref.size <= self.settings.max_size)
        message = self.read(mailbox, ref, whole)
        if not message:
            return None
        assessment = assess(message, self.settings.verify, self.resolver, whole=whole)
        now = time.time()
        hold_over = now - (held_since if held_since is not None else now) >= self.settings.hold_max
        decision = decide(assessment.verdict, assessment.machine, self.settings.policy, hold_over)
        fields = assessment.fields()
        fields["trusted"] = decision.trusted
        tags = (["untrusted"] if decision.tag_untrusted else []) + (["machine"] if decision.tag_machine else [])
        if tags:
            fields["tags"] = tags
        return Screened(ref, decision, assessment, fields)

    @staticmethod
    def read(mailbox: Any, ref: MessageRef, whole: bool) -> bytes:
        """The message (*whole*) or its header block, read without changing it; b"" when it is gone.

        :raises MailError: the server could not be read.
        """
        try:
            if whole:
                chunks, _ = mailbox.fetch_stream(ref)
                return b"".join(chunks)
            return bytes(mailbox.fetch_header(ref))
        except MessageGoneError:
            return b""
