# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_wait: back-off and the wait loop, on a fake monotonic clock."""

from __future__ import annotations

import pytest

from ansible_collections.servicemesh.istio.plugins.module_utils._wait import Backoff, next_sleep, wait_until, wait_with_progress


@pytest.mark.parametrize('initial, factor, maximum, expected', [
    (1, 2, 10, [1, 2, 4, 8, 10, 10]),
    (0.5, 1.5, 2, [0.5, 0.75, 1.125, 1.6875, 2, 2]),
    (3, 1, 3, [3, 3, 3, 3, 3, 3]),
    (0.2, 2, 0.5, [0.2, 0.4, 0.5, 0.5, 0.5, 0.5]),
])
def test_backoff_delays(initial, factor, maximum, expected):
    assert Backoff(initial, factor, maximum).delays(6) == pytest.approx(expected)


def test_backoff_large_attempt_is_capped():
    assert Backoff(1, 2, 10).delay(100000) == 10


@pytest.mark.parametrize('args', [(0, 2, 10), (1, 0.5, 10), (5, 2, 1)])
def test_backoff_rejects_bad_parameters(args):
    with pytest.raises(ValueError):
        Backoff(*args)


@pytest.mark.parametrize('attempt, remaining, expected', [
    (0, None, 1), (3, None, 8), (3, 2.5, 2.5), (0, 0.0, 0.0), (5, 100, 10),
])
def test_next_sleep_never_passes_the_deadline(attempt, remaining, expected):
    assert next_sleep(Backoff(1, 2, 10), attempt, remaining) == expected


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_until_succeeds_after_retries():
    clock = FakeClock()
    calls = []

    def check(remaining):
        calls.append(remaining)
        clock.now += 0.1  # each check takes 0.1 s
        return ('ok', 'done') if len(calls) == 4 else ('retry', len(calls))

    outcome = wait_until(check, 60, Backoff(1, 2, 10), clock=clock, sleep=clock.sleep)
    assert outcome.success and not outcome.timed_out and not outcome.aborted
    assert outcome.result == 'done'
    assert outcome.attempts == 4
    assert clock.sleeps == [1, 2, 4]
    assert outcome.elapsed == pytest.approx(7.4)
    assert calls[0] == 60


def test_wait_until_times_out_at_the_deadline_with_last_result():
    clock = FakeClock()

    def check(remaining):
        clock.now += 0.25
        return 'retry', remaining

    outcome = wait_until(check, 5, Backoff(1, 2, 10), clock=clock, sleep=clock.sleep)
    assert outcome.timed_out and not outcome.success
    # checks at 0, 1.25, 3.5 and (sleep clipped to the deadline) 5.0
    assert clock.sleeps == pytest.approx([1, 2, 1.25])
    assert outcome.attempts == 4
    assert outcome.result == pytest.approx(0.0)  # the last check had no time left
    assert 5 <= outcome.elapsed < 5.3


def test_wait_until_zero_timeout_makes_one_attempt():
    clock = FakeClock()
    outcome = wait_until(lambda r: ('retry', None), 0, Backoff(), clock=clock, sleep=clock.sleep)
    assert outcome.attempts == 1 and outcome.timed_out
    assert clock.sleeps == []


def test_wait_until_fatal_stops_at_once():
    clock = FakeClock()
    outcome = wait_until(lambda r: ('fatal', 'bad'), 60, Backoff(), clock=clock, sleep=clock.sleep)
    assert outcome.aborted and outcome.attempts == 1 and outcome.result == 'bad'


def test_wait_until_without_timeout_passes_none():
    clock = FakeClock()
    seen = []

    def check(remaining):
        seen.append(remaining)
        return ('ok', None) if len(seen) == 2 else ('retry', None)

    assert wait_until(check, None, Backoff(), clock=clock, sleep=clock.sleep).success
    assert seen == [None, None]


def test_wait_until_rejects_unknown_status():
    with pytest.raises(ValueError):
        wait_until(lambda r: ('maybe', None), 1, Backoff())


def test_an_api_outage_is_said_when_it_starts_and_when_it_ends():
    """Progress every 30 s, but the outage (attempts 2 to 4 unreachable) is
    said at once, and so is the first attempt that reached the API again."""
    clock = FakeClock()
    lines = []
    answers = iter([{}, {'unreachable': True, 'error': 'Connection refused'}, {'unreachable': True, 'error': 'x'},
                    {'unreachable': True, 'error': 'y'}, {}, {'done': True}])

    def check(remaining):
        del remaining
        result = next(answers)
        return ('ok' if result.get('done') else 'retry'), result

    params = dict(timeout=120, initial_sleep=1, backoff_factor=2, max_sleep=10, progress_interval=30)
    outcome, dummy = wait_with_progress(check, params, lines.append, lambda result: 'something', clock=clock,
                                        sleep=clock.sleep)
    assert outcome.success
    assert lines == ['the API server does not answer (Connection refused); waiting on (1s of 120s)',
                     'the API server answers again, after 14 s without an answer; waiting on (15s of 120s)']
