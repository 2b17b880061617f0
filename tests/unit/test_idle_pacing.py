"""How a poll with mailIdle on paces itself inside sr3's poll flow (mailingest.poller.pacing and the
poll's retry policy), without a server: a Flow and its scheduler are built without their
constructors, as sr3 3.3.1 lays them out."""

import datetime
import logging
import time
import types

import pytest
import sarracenia.config
import sarracenia.flow
import sarracenia.flowcb
from sarracenia.flowcb.scheduled.poll import Poll as Sr3Scheduler

from mailingest.errors import MailAuthError, MailConnectionError
from mailingest.poller.pacing import FlowPacing, longest_empty_sleep


def in_a_minute() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)


def sr3_poll_flow() -> tuple:
    """An sr3 poll flow whose scheduler will not let the next gather through for 60 s."""
    scheduler = Sr3Scheduler.__new__(Sr3Scheduler)
    scheduler.next_gather_time = in_a_minute()
    flow = sarracenia.flow.Flow.__new__(sarracenia.flow.Flow)
    flow.plugins = {"gather": [scheduler.gather], "poll": []}
    return flow, scheduler


def called_from(flow, action):
    """``action()`` called from inside a method of ``flow``, as sr3 calls poll() from its run loop."""
    def run_loop(self):
        return action()
    return types.MethodType(run_loop, flow)()


@pytest.mark.parametrize("sleep, longest", [(0.1, 6.4), (1, 8), (0.5, 8), (7, 7), (0, 0)])
def test_the_longest_back_off_sleep_doubles_sr3s_sleep_while_it_is_under_5_s(sleep, longest):
    assert longest_empty_sleep(sleep) == pytest.approx(longest)


def test_the_poll_lets_its_flow_gather_again_at_once():
    flow, scheduler = sr3_poll_flow()
    pacing = FlowPacing(types.SimpleNamespace(housekeeping=300, sleep=0.1))
    assert called_from(flow, pacing.gather_again_now)
    assert scheduler.next_gather_time <= datetime.datetime.now(datetime.timezone.utc)
    scheduler.next_gather_time = in_a_minute()
    assert called_from(flow, pacing.gather_again_now), "found once, steered every time"
    assert scheduler.next_gather_time <= datetime.datetime.now(datetime.timezone.utc)


def test_outside_an_sr3_flow_there_is_nothing_to_steer_and_one_info_line_says_so(caplog):
    caplog.set_level(logging.INFO, logger="mailingest")
    pacing = FlowPacing(types.SimpleNamespace(housekeeping=300, sleep=0.1))
    assert not pacing.gather_again_now()
    assert not pacing.gather_again_now()
    lines = [r for r in caplog.records if r.name == "mailingest.poller.pacing"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "waits for the next scheduled_interval" in lines[0].getMessage()


def test_housekeeping_is_due_one_housekeeping_interval_after_the_flow_last_ran_it():
    pacing = FlowPacing(types.SimpleNamespace(housekeeping=60, sleep=0.1))
    assert pacing.empty_sleep_max == pytest.approx(6.4)
    before = time.monotonic()
    pacing.housekeeping_ran()
    assert before + 60 <= pacing.housekeeping_due() <= time.monotonic() + 60


def idle_poll(**options):
    """``callback mailingest.poll`` with mailIdle on, loaded the way sr3 loads it (no connection is made)."""
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "poll", "pacing", "foreground", 0
    o.pollUrl, o.post_broker, o.post_exchange = "imaps://alice@mail.example.com/", "amqp://u@localhost/", "x"
    for name, value in {"mailIdle": True, "scheduled_interval": 60, **options}.items():
        setattr(o, name, value)
    o.finalize("poll", "pacing")
    return sarracenia.flowcb.load_library("mailingest.poll", o)


def test_with_mail_idle_a_lost_server_is_retried_after_a_tenth_of_the_outage_so_far():
    poll = idle_poll()
    lost = MailConnectionError("cannot connect to imaps://alice@mail.example.com: connection refused")
    poll._failed(lost)
    assert poll._retry_at - time.monotonic() == pytest.approx(0.5, abs=0.1), "a restart costs about a second"
    for outage, delay in ((30, 3), (300, 30), (3000, 60)):
        poll._outage_started = time.monotonic() - outage
        poll._failed(lost)
        assert poll._retry_at - time.monotonic() == pytest.approx(delay, abs=0.1)


def test_with_mail_idle_a_refused_login_waits_for_the_next_scheduled_interval():
    poll = idle_poll()
    poll._failed(MailAuthError("imaps://alice@mail.example.com refused the login"))
    assert poll._retry_at - time.monotonic() == pytest.approx(60, abs=0.1)


def test_mail_idle_no_longer_asks_for_scheduled_interval_1(caplog):
    caplog.set_level(logging.INFO)
    idle_poll(scheduled_interval=600)
    assert not [r for r in caplog.records if r.name.startswith("mailingest") and r.levelno >= logging.WARNING]
