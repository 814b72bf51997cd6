"""Progress bars that suit where the output goes: a live bar on a terminal, and one line per
finished bar in a log file or pipe (a live bar there writes a line, or backspaces, per update)."""

import sys

import keras


def progress_bar(total, verbose=1, **kwargs):
    """keras.utils.Progbar(total, ...), live only when stdout is a terminal."""
    live = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return keras.utils.Progbar(total, verbose=(1 if live else 2) if verbose else 0, **kwargs)


class _Whole(float):
    """A rate a progress bar prints as a whole number ("181", not Keras's "181.5463")."""

    def __truediv__(self, other):  # the bar divides a value by its count (1) before formatting it
        return _Whole(float(self) / other)

    def __format__(self, spec):
        return f"{float(self):,.0f}"


def rate(count, seconds):
    """Items per second (0 before any time has passed), printed whole by a progress bar."""
    return _Whole(count / max(seconds, 1e-9))
