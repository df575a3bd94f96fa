"""Exceptions that the CLI turns into one-line messages and exit codes, and the wording they share."""

from __future__ import annotations

from typing import Callable, Mapping

# The logger of the warnings about single rows of an input, which --quiet turns into one summary line.
ROW_WARNINGS = "taxifare.rows"


class TaxifareError(Exception):
    """A failure the user can act on; reported as one line, exit code 1."""

    exit_code = 1


class InputError(TaxifareError):
    """Bad usage or bad input (flags, environment, files); exit code 2."""

    exit_code = 2


class Interrupted(TaxifareError):
    """A stop signal (Ctrl-C, or SIGTERM from cron or a scheduler); exit code 128 + the signal number."""

    def __init__(self, signal_number: int, name: str, forced: bool = False):
        # --force starts afresh: a rerun with it would throw away what this run did.
        rerun = "rerun without --force" if forced else "rerun the same command"
        super().__init__(f"interrupted by {name}; {rerun} to continue where it stopped")
        self.exit_code = 128 + signal_number


_stops_received: list[Interrupted] = []


def stop_received(stop: Interrupted) -> Interrupted:
    """Record the stop signal whose exception the CLI's handler is about to raise."""
    _stops_received.append(stop)
    return stop


def raise_if_stopped() -> None:
    """At the end of a step of long work: raise again a stop whose exception was lost. A handler raises
    wherever Python was, and C code can swallow it there (numpy clears errors in its dtype comparisons),
    so the run would otherwise go on to the end and exit 0."""
    if _stops_received:
        raise _stops_received[0]


def first_line(error: BaseException) -> str:
    """The first line of an exception's text ("" when it has none), for one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def top_reasons(counts: Mapping[str, int], first: Callable[[str], str], limit: int = 3) -> str:
    """The most frequent reasons (ties in the order of `counts`), each with its count and first(reason),
    e.g. "outside_nyc 3 (first on line 2: pickup_longitude=0); bad_datetime 1 (first on line 5: ...)".
    Semicolons between them: a sample value may hold commas."""
    ranked = sorted((reason for reason, count in counts.items() if count), key=lambda reason: -counts[reason])
    shown = [f"{reason} {counts[reason]:,}{first(reason)}" for reason in ranked[:limit]]
    hidden = len(ranked) - limit
    if hidden > 0:
        shown.append(f"{hidden} more reason{'s' if hidden > 1 else ''}")
    return "; ".join(shown)


def first_example(where: str, value: str | None) -> str:
    """ " (first on line 4: fare_amount=-5)": where a reason first applied, and the value that broke it."""
    return f" (first on {where}{'' if value is None else ': ' + value})"


def clipped(text: str, limit: int) -> str:
    """`text`, or when it is longer than `limit` characters, its start and "..." (`limit` in all)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
