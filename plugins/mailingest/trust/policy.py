"""What to do with a message, given its sender verdict and class: the policy options.

``mailUntrusted`` applies to mail that is not trusted: a verdict other than ``pass``, or a ``From:``
not on ``mailAcceptFrom`` when that list is set.  ``mailMachineMail`` applies to the classes in
``mailMachineClasses``.  Each is one of ``announce`` (the verdict is recorded in the notice),
``tag`` (announced, with ``mail.untrusted`` or ``mail.machine`` true), ``quarantine <folder>``
(moved to that folder on the server, never announced) or ``skip`` (left where it is, never
announced).  The untrusted decision wins over the machine one when both apply.  A ``temperror``
verdict is held (neither announced nor moved) and checked again at the next cycles (see
:func:`decide`).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from mailingest.errors import ConfigError
from mailingest.trust.addresses import AllowList
from mailingest.trust.classify import MACHINE_CLASSES, MachineClass
from mailingest.trust.verdict import SenderVerdict

ACTIONS = ("announce", "tag", "quarantine", "skip")


@dataclass(frozen=True)
class Action:
    kind: str = "announce"
    folder: str | None = None

    @classmethod
    def parse(cls, text: str | None, option: str) -> Action:
        """``announce``, ``tag``, ``quarantine <folder>`` or ``skip``.  :raises ConfigError:"""
        words = (text or "").split(None, 1) or ["announce"]
        kind = words[0].lower()
        folder = words[1].strip() if len(words) > 1 else None
        if kind not in ACTIONS or (kind == "quarantine") != bool(folder):
            raise ConfigError(f"{option} {text!r}: use announce, tag, quarantine <folder> or skip")
        return cls(kind, folder)

    def describe(self) -> str:
        return f"{self.kind} {self.folder}" if self.folder else self.kind


@dataclass(frozen=True)
class TrustPolicy:
    allow: AllowList = AllowList()
    untrusted: Action = Action()
    machine: Action = Action()
    machine_classes: AbstractSet[str] = frozenset(MACHINE_CLASSES)


@dataclass(frozen=True)
class Decision:
    """``announce`` (maybe tagged), ``quarantine``, ``skip`` or ``hold`` (temperror: ask again later)."""

    action: str
    folder: str | None = None
    trusted: bool = False
    tag_untrusted: bool = False
    tag_machine: bool = False
    reason: str = ""

    @property
    def announced(self) -> bool:
        return self.action == "announce"


def trusted(verdict: SenderVerdict, allow: AllowList) -> bool:
    return verdict.result == "pass" and (not allow or allow.admits(verdict.from_address))


def decide(verdict: SenderVerdict, machine: MachineClass, policy: TrustPolicy, hold_over: bool = False) -> Decision:
    """The decision for one message (pure; the caller acts on it, logs it and counts it).

    A ``temperror`` verdict is held: DNS could not answer, the verdict may still become ``pass``,
    so the message is neither announced nor moved, and checked again later.  Once it has been held
    longer than the operator allows (*hold_over*, ``mailTrustHoldMax``), a message that the untrusted
    policy would announce anyway (``announce``, ``tag``) is announced with its temperror verdict;
    one that it would quarantine or skip stays held: a temperror is never treated as a fail."""
    is_trusted = trusted(verdict, policy.allow)
    if not is_trusted:
        if verdict.result == "pass":
            why = f"{verdict.from_address} is not on mailAcceptFrom"
        else:
            why = f"sender {verdict.result}"
        if verdict.result == "temperror" and not (hold_over and policy.untrusted.kind in ("announce", "tag")):
            return Decision("hold", reason="sender temperror: DNS could not answer; checked again next cycle")
        if verdict.result == "temperror":
            why += " for longer than mailTrustHoldMax"
        if policy.untrusted.kind in ("quarantine", "skip"):
            return Decision(policy.untrusted.kind, policy.untrusted.folder, False,
                            reason=f"{why}; mailUntrusted {policy.untrusted.describe()}")
    else:
        why = f"sender pass ({verdict.method} {verdict.domain})"
    applies = machine.machine and machine.kind in policy.machine_classes
    if applies and policy.machine.kind in ("quarantine", "skip"):
        return Decision(policy.machine.kind, policy.machine.folder, is_trusted,
                        reason=f"{machine.kind} ({machine.reason}); mailMachineMail {policy.machine.describe()}")
    return Decision("announce", None, is_trusted,
                    tag_untrusted=not is_trusted and policy.untrusted.kind == "tag",
                    tag_machine=applies and policy.machine.kind == "tag",
                    reason=why + (f"; {machine.kind} ({machine.reason})" if machine.machine else ""))
