"""Progress bars that suit where the output goes: a live bar on a terminal, and one line per
finished bar in a log file or pipe (a live bar there writes a line, or backspaces, per update)."""

import sys

import keras


def progress_bar(total, verbose=1, **kwargs):
    """keras.utils.Progbar(total, ...), live only when stdout is a terminal."""
    live = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return keras.utils.Progbar(total, verbose=(1 if live else 2) if verbose else 0, **kwargs)


def rate(count, seconds):
    """Items per second (0 before any time has passed)."""
    return count / max(seconds, 1e-9)
