"""Specification of mailingest.backoff: one value object for every growing wait."""

import pytest

from mailingest.backoff import Backoff


def test_the_wait_doubles_from_the_first_to_the_maximum_and_stays_there():
    backoff = Backoff(first=1.0, maximum=60.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_no_failure_means_no_wait():
    assert Backoff(first=15.0, maximum=600.0).delay(0) == 0.0


def test_a_long_run_of_failures_stays_at_the_maximum_without_overflowing():
    assert Backoff(first=0.5, maximum=4.0).delay(10_000) == 4.0


def test_another_factor_grows_the_waits_by_it():
    assert [Backoff(first=1.0, maximum=100.0, factor=3.0).delay(n) for n in (1, 2, 3, 4, 5)] == [1, 3, 9, 27, 81]


def test_the_wait_after_a_previous_one_grows_by_the_factor_up_to_the_maximum():
    backoff = Backoff(first=15.0, maximum=600.0)
    assert [backoff.after(previous) for previous in (0.0, 15.0, 240.0, 480.0, 600.0)] == [15, 30, 480, 600, 600]


def test_a_wait_outside_the_bounds_is_brought_within_them():
    backoff = Backoff(first=0.5, maximum=60.0)
    assert (backoff.bounded(0.01), backoff.bounded(7.0), backoff.bounded(3600.0)) == (0.5, 7.0, 60.0)


@pytest.mark.parametrize("backoff, words", [
    (Backoff(first=1.0, maximum=30.0), "1, 2, 4, 8, 16, then every 30 s"),
    (Backoff(first=15.0, maximum=600.0), "15, 30, 60, 120, 240, 480, then every 600 s"),
    (Backoff(first=0.5, maximum=1000.0), "0.5, 1, 2, …, then every 1000 s"),
    (Backoff(first=5.0, maximum=5.0), "every 5 s"),
])
def test_the_waits_are_described_in_words_for_the_log(backoff, words):
    assert backoff.describe() == words


@pytest.mark.parametrize("first, maximum, factor", [(0, 10, 2), (-1, 10, 2), (20, 10, 2), (1, 10, 0.5)])
def test_a_backoff_that_would_not_grow_or_wait_is_refused(first, maximum, factor):
    with pytest.raises(ValueError, match="Backoff needs"):
        Backoff(first=first, maximum=maximum, factor=factor)
