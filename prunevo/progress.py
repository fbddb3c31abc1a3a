"""Progress of the long steps (pretraining, fine-tuning, evolution, re-scoring, comparisons), on a terminal or in a log.

On a terminal (or in a notebook) a step shows a tqdm bar.  When stderr is anything else (a run whose output
goes to a file), a bar would print nothing useful, so the step writes one plain line at most every
``PLAIN_EVERY_S`` seconds and one when it ends::

    prunevo: pretrain resnet20: 120/300 steps (40%), elapsed 4m10s, remaining ~6m15s

A disabled bar (``--no-progress``) prints nothing anywhere.  Both kinds offer what the call sites use:
``update``, ``set_postfix``, ``close``, ``with`` and iteration over the wrapped iterable.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO

PLAIN_EVERY_S = 30.0  # a log gets a progress line at most this often, in seconds (and one at the end of the step)


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, *,
                 iterable: Iterable | None = None, initial: int = 0, leave: bool = True, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every_s: float | None = None):
    """A progress bar for one step: tqdm on a terminal, plain lines in a log, nothing when not ``enabled``.

    Args:
        total: units the step has in all (None: unknown, so no share or remaining time is shown).
        desc: what the step is, e.g. ``pretrain resnet20``.
        unit: the name of one unit of work, e.g. ``step``, ``gen``, ``seed``.
        enabled: False prints nothing (``--no-progress``).
        iterable: when given, iterating the bar yields its items and counts one unit each.
        initial: units already done before this process started (a resumed run); the remaining time is
            estimated from this process's rate only.
        leave: on a terminal, keep the finished bar on screen (tqdm's ``leave``); a log always gets the final line.
        stream: where to write (default: ``sys.stderr`` at the time of the call); whether it is a terminal
            decides the kind of bar.
        clock: seconds of a monotonic clock (for tests).
        every_s: seconds between two plain lines at least (default ``PLAIN_EVERY_S``).

    Returns:
        An object with ``update(n)``, ``set_postfix(**values)``, ``close()``, ``with`` and ``__iter__``: a
        tqdm bar (disabled when not ``enabled``) or a ``PlainProgress``.
    """
    from tqdm.auto import tqdm

    stream = sys.stderr if stream is None else stream
    if not enabled or _interactive(stream, tqdm):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream,
                    disable=not enabled)
    return PlainProgress(total, desc, unit, iterable=iterable, initial=initial, stream=stream, clock=clock,
                         every_s=PLAIN_EVERY_S if every_s is None else every_s)


def track(iterable: Iterable, desc: str, unit: str = "it", enabled: bool = True, **options: Any):
    """``progress_bar`` over the items of ``iterable`` (its length is the total when it has one).

    Args:
        iterable: the items of the step, one unit each.
        desc, unit, enabled, options: as for ``progress_bar``.

    Returns:
        The bar; iterate it to get the items of ``iterable``.
    """
    total = len(iterable) if hasattr(iterable, "__len__") else None
    return progress_bar(total, desc, unit, enabled, iterable=iterable, **options)


def _interactive(stream: TextIO, tqdm_class: type) -> bool:
    """Whether ``stream`` shows a live bar: a terminal, or a notebook (where tqdm.auto draws a widget)."""
    if any(c.__module__ == "tqdm.notebook" for c in tqdm_class.__mro__):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def duration(seconds: float) -> str:
    """``seconds`` as ``42s``, ``4m10s`` or ``1h05m``.

    Args:
        seconds: a duration in seconds (negative counts as 0).

    Returns:
        The duration, rounded to the second (to the minute from one hour).
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


class PlainProgress:
    """A progress bar for a log: one line at most every ``every_s`` seconds of ``clock``, and one at ``close``.

    A line is written when ``update`` finds that ``every_s`` seconds passed since the last one (or since the
    start), so a single unit that takes longer shows up only when it ends.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, iterable: Iterable | None = None,
                 initial: int = 0, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 every_s: float = PLAIN_EVERY_S):
        self.total, self.desc, self.unit, self.iterable = total, desc, unit, iterable
        self.n = self._initial = initial
        self._stream = sys.stderr if stream is None else stream
        self._clock, self._every_s = clock, every_s
        self._start = self._last = clock()
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; writes a line when ``every_s`` seconds passed since the last one (not
        for the last unit: ``close`` reports it)."""
        self.n += n
        now = self._clock()
        if now - self._last >= self._every_s and (self.total is None or self.n < self.total):
            self._last = now
            self._write(self._line(now))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        """Values shown after the counts in the following lines (tqdm's ``set_postfix``; ``refresh`` is unused)."""
        items = {**(ordered_dict or {}), **values}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        """Write the final line (the units done and the time taken); later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        elapsed = self._clock() - self._start
        finished = self.total is None or self.n >= self.total
        verb = "done" if finished else "stopped"
        self._write(f"prunevo: {self.desc}: {verb}, {self._counts()} in {duration(elapsed)}{self._tail()}")

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _counts(self) -> str:
        shown = self.total if self.total is not None else self.n
        unit = self.unit if shown == 1 else _plural(self.unit)
        return f"{self.n}/{self.total} {unit}" if self.total is not None else f"{self.n} {unit}"

    def _tail(self) -> str:
        return f"; {self._postfix}" if self._postfix else ""

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        text = f"prunevo: {self.desc}: {self._counts()}{share}, elapsed {duration(elapsed)}"
        done_here = self.n - self._initial
        if self.total is not None:
            left = max(0, self.total - self.n)
            text += f", remaining ~{duration(elapsed / done_here * left)}" if done_here > 0 else ", remaining ?"
        return text + self._tail()

    def _write(self, line: str) -> None:
        print(line, file=self._stream, flush=True)


def _plural(unit: str) -> str:
    """``step`` -> ``steps``, ``batch`` -> ``batches``: the unit as a count of more than one reads."""
    return f"{unit}es" if unit.endswith(("s", "x", "ch", "sh")) else f"{unit}s"
