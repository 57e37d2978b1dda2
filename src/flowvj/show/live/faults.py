"""Injected failures, for proving that a live show survives them.

`FLOWVJ_FAULTS="decode=0.05,output=0.01"` makes that share of the live loop's decodes and output
calls raise `InjectedFault` (a seeded random stream, so a test run repeats). Unset, every check
is one dict lookup. Why in the product and not in a test double: the claim under test is that
the real CLI, with its real threads, decoder and outputs, keeps drawing through failures; the
fault-injection test runs `flowvj play` as a user does, with this variable set.
"""

import os
import random

POINTS = ("decode", "output", "control")


class InjectedFault(RuntimeError):
    """A failure raised on purpose by FLOWVJ_FAULTS."""


def _parse(text):
    rates = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        point, _, rate = item.partition("=")
        if point in POINTS:
            try:
                rates[point] = min(1.0, max(0.0, float(rate)))
            except ValueError:
                pass
    return rates


_RATES = _parse(os.environ.get("FLOWVJ_FAULTS"))
_RANDOM = random.Random(1234)


def maybe_fail(point):
    """Raise InjectedFault at this point with the rate FLOWVJ_FAULTS gives it (never when unset)."""
    rate = _RATES.get(point)
    if rate and _RANDOM.random() < rate:
        raise InjectedFault(f"injected {point} failure (FLOWVJ_FAULTS)")
