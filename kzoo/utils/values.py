"""Value checks shared by the builders and layers: a bool is not a count (`classes=True`
would build a one-class model), whatever Python's `isinstance(True, int)` says."""

import numbers


def is_count(value, minimum=1):
    """An integer (Python's or NumPy's, never a bool) of at least `minimum`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def as_pair(value):
    """A Keras size or stride (an int, or a pair) as a (height, width) tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
