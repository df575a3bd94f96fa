"""Progress and summaries: a live bar on a terminal, plain timestamped log lines otherwise (cron, CI)."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import sys
import time
from typing import TextIO

from taxifare.core.errors import raise_if_stopped

log = logging.getLogger("taxifare")

LOG_EVERY_SECONDS = 10.0
_BAR_WIDTH = 24


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (never below the memory it holds now).

    Linux's VmHWM, not ru_maxrss: ru_maxrss survives fork and exec, so a process started by a large
    parent would report the parent's peak as its own.
    """
    return _high_water_mark_bytes() / 2**20


def _high_water_mark_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts work done; `note` is a short free text shown beside the rate (e.g. the best validation MAE).
    `done`: what an earlier, interrupted run did, shown as done but not counted in the rate."""

    def __init__(self, label: str, total: int | None = None, unit: str = "rows", stream: TextIO | None = None, done: int = 0):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        # No bar under --quiet, which sets the taxifare logger to warnings and errors only.
        self.interactive = self.stream.isatty() and log.level <= logging.INFO
        self.done = self.done_before = done
        self.note = ""
        self.started = time.monotonic()
        self._last_shown = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return (self.done - self.done_before) / self.elapsed if self.elapsed > 0 else 0.0

    def advance(self, count: int, note: str = "") -> None:
        raise_if_stopped()  # every long loop reports each step here
        self.done += count
        self.note = note or self.note
        now = time.monotonic()
        if self.interactive and now - self._last_shown >= 0.1:
            self._draw()
            self._last_shown = now
        elif not self.interactive and now - self._last_shown >= LOG_EVERY_SECONDS:
            log.info("%s", self._status_text())
            self._last_shown = now

    def close(self) -> None:
        if self.interactive:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _status_text(self) -> str:
        parts = [f"{self.label}: {self.done:,} {self.unit}"]
        if self.total:
            parts[0] += f" of ~{self.total:,} ({min(self.done / self.total, 1):.0%})"
        parts.append(f"{self.rate:,.0f} {self.unit}/s")
        if self.total and self.rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / self.rate)}")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def _draw(self) -> None:
        bar = ""
        if self.total:
            filled = int(_BAR_WIDTH * min(self.done / self.total, 1))
            bar = "[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "] "
        # One screen line, or each redraw would leave the wrapped start of the last one behind: the bar
        # goes first, then the text's end.
        text, width = self._status_text(), _columns(self.stream) - 1
        line = f"{bar}{text}" if len(bar) + len(text) <= width else text[:width]
        self.stream.write(f"\r\033[K{line}")
        self.stream.flush()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns  # COLUMNS, else stdout's terminal, else 80


def log_summary(title: str, rows: list[tuple[str, object]]) -> None:
    """A block of aligned `name: value` lines, one log record each, so cron logs stay greppable."""
    width = max(len(name) for name, _ in rows)
    log.info("%s", title)
    for name, value in rows:
        log.info("  %s %s", f"{name}:".ljust(width + 1), value)
