# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""Wait-until loop with capped exponential back-off on a monotonic clock."""

from __future__ import annotations

import time


class Backoff:
    """Delays between attempts: ``initial * factor ** n``, capped at ``maximum``.

    ``Backoff(1, 2, 10)`` gives 1, 2, 4, 8, 10, 10, ...
    """

    def __init__(self, initial=1.0, factor=2.0, maximum=10.0):
        if initial <= 0:
            raise ValueError('initial delay must be positive, got %r' % (initial,))
        if factor < 1:
            raise ValueError('back-off factor must be at least 1, got %r' % (factor,))
        if maximum < initial:
            raise ValueError('maximum delay %r is smaller than the initial delay %r' % (maximum, initial))
        self.initial = float(initial)
        self.factor = float(factor)
        self.maximum = float(maximum)

    def delay(self, attempt):
        """Delay after attempt number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError('attempt must be >= 0')
        # Avoid float overflow for very large attempt numbers.
        value = self.initial
        for dummy in range(attempt):
            value *= self.factor
            if value >= self.maximum:
                return self.maximum
        return min(value, self.maximum)

    def delays(self, count):
        return [self.delay(i) for i in range(count)]


def next_sleep(backoff, attempt, remaining):
    """How long to sleep after ``attempt`` when ``remaining`` seconds are left.

    Never sleeps past the deadline, so that the last attempt happens at the
    deadline rather than after it. Returns 0 when no time is left.
    """
    if remaining is None:
        return backoff.delay(attempt)
    return max(0.0, min(backoff.delay(attempt), remaining))


class WaitOutcome:
    """What :func:`wait_until` found."""

    def __init__(self, success, result, attempts, elapsed, timed_out, aborted):
        self.success = success
        self.result = result
        self.attempts = attempts
        self.elapsed = elapsed
        self.timed_out = timed_out
        self.aborted = aborted


def wait_until(check, timeout, backoff, clock=time.monotonic, sleep=time.sleep):
    """Call ``check(remaining)`` until it reports success, a fatal error or the timeout.

    ``check`` receives the seconds left before the deadline (``None`` when
    there is no timeout) so that it can bound its own network timeouts, and
    returns ``(status, result)`` with status ``'ok'``, ``'retry'`` or
    ``'fatal'``. The loop always makes at least one attempt, and the last
    attempt happens at the deadline at the latest.
    """
    start = clock()
    deadline = None if timeout is None else start + timeout
    attempt = 0
    while True:
        remaining = None if deadline is None else max(0.0, deadline - clock())
        status, result = check(remaining)
        attempt += 1
        now = clock()
        if status == 'ok':
            return WaitOutcome(True, result, attempt, now - start, False, False)
        if status == 'fatal':
            return WaitOutcome(False, result, attempt, now - start, False, True)
        if status != 'retry':
            raise ValueError('check returned unknown status %r' % (status,))
        if deadline is not None and now >= deadline:
            return WaitOutcome(False, result, attempt, now - start, True, False)
        remaining = None if deadline is None else deadline - now
        pause = next_sleep(backoff, attempt - 1, remaining)
        if pause > 0:
            sleep(pause)


def wait_with_progress(check, params, progress=None, waiting_for=None, clock=time.monotonic, sleep=time.sleep):
    """``wait_until`` with the shared wait options in ``params`` (``timeout``,
    ``initial_sleep``, ``backoff_factor``, ``max_sleep``), for the modules that
    wait on the Kubernetes API. Returns ``(outcome, last)``: ``last`` is the
    result of the latest attempt only, so that an error of an earlier attempt
    (an API outage) does not colour what the last one saw.

    With ``progress`` (a callable taking a line) and ``params['progress_interval']``
    above 0, a line ``waiting <elapsed>s of <timeout>s for <what>`` is given
    at most once per interval, the first after one interval; ``waiting_for(result)``
    says what is still awaited in the latest attempt's result.

    An attempt whose result says ``unreachable`` (nothing answered: an API
    server outage) is said at once, whatever the interval, and so is the first
    attempt after it that reached the API server again, with how long it did
    not answer."""
    start = clock()
    last = {}
    interval = params.get('progress_interval') or 0
    said = [None]
    outage = [None]

    def attempt(remaining):
        status, result = check(remaining)
        last.clear()
        last.update(result)
        elapsed = clock() - start
        if progress and interval:
            if result.get('unreachable') and outage[0] is None:
                outage[0] = elapsed
                progress('the API server does not answer (%s); waiting on (%ds of %ds)'
                         % (result.get('error', 'no answer'), elapsed, params['timeout']))
            elif not result.get('unreachable') and outage[0] is not None:
                progress('the API server answers again, after %.0f s without an answer; waiting on (%ds of %ds)'
                         % (elapsed - outage[0], elapsed, params['timeout']))
                outage[0] = None
        if (progress and waiting_for and interval and elapsed >= interval
                and (said[0] is None or elapsed - said[0] >= interval)):
            said[0] = elapsed
            progress('waiting %ds of %ds for %s' % (elapsed, params['timeout'], waiting_for(result)))
        return status, result

    backoff = Backoff(params['initial_sleep'], params['backoff_factor'], params['max_sleep'])
    return wait_until(attempt, params['timeout'], backoff, clock=clock, sleep=sleep), last


# The options documented by the doc fragment servicemesh.istio.wait.
WAIT_ARGUMENT_SPEC = dict(
    timeout=dict(type='float', default=300),
    initial_sleep=dict(type='float', default=1),
    max_sleep=dict(type='float', default=10),
    backoff_factor=dict(type='float', default=2),
)
