"""The one rule for event times every input path applies (``replay`` of tables and captures, ``labels send``,
``baseline build --format``): what a time column's numbers mean, and which times the processor would take.

Only the standard library: the instrumentation's dependencies stay ``opentelemetry-api``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from typing import Any

UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
"""Nanoseconds per unit of a numeric time column (``--time-unit``)."""
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
MAX_CLOCK_SKEW_S = 3_600
"""How far ahead of now the processor takes a time (``DecodeLimits.max_clock_skew_seconds``' default); later ones
it rejects (timestamp_in_future)."""


def guess_unit(values: Sequence[Any]) -> str | None:
    """The unit of a numeric time column from its largest magnitude: Unix seconds below 1e11 (the year 5138),
    milliseconds below 1e14, microseconds below 1e17, else nanoseconds. None without numbers.

    >>> guess_unit([1793923984]), guess_unit([1793923984000]), guess_unit([1793923984000000000])
    ('s', 'ms', 'ns')
    """
    numbers = [abs(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    if not numbers:
        return None
    top = max(numbers)
    return "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"


def check_event_time(ns: int, now_ns: int | None = None) -> int:
    """``ns`` if the processor would take it as an event time; else ValueError saying why, with the date.

    >>> check_event_time(1793923984 * 10**9)
    1793923984000000000
    >>> check_event_time(-2208988800 * 10**9)
    Traceback (most recent call last):
    ...
    ValueError: 1900-01-01T00:00:00Z is before 1970 (OTLP times start at Unix time 0)
    """
    if ns < 0:
        raise ValueError(f"{_date(ns)} is before 1970 (OTLP times start at Unix time 0)")
    now_ns = time.time_ns() if now_ns is None else now_ns
    if ns > now_ns + MAX_CLOCK_SKEW_S * 10**9:
        raise ValueError(f"{_date(ns)} is more than {MAX_CLOCK_SKEW_S // 3600} h ahead of now: the processor refuses "
                         "it (timestamp_in_future)")
    return ns


def _date(ns: int) -> str:
    try:
        moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            microseconds=ns // 1000)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:
        return f"Unix time {ns / 1e9:.4g} s"


__all__ = ["MAX_CLOCK_SKEW_S", "UNITS", "UNIT_NAMES", "check_event_time", "guess_unit"]
