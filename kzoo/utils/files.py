"""Files written so that a crash never leaves a half-written one behind."""

import contextlib
import os
import tempfile


def save_weights_atomic(model, path):
    """`model.save_weights(path)` through a temporary file beside it (Keras needs the
    .weights.h5 suffix, so atomic_write's file object does not fit), with the record of
    the architecture that wrote it (kzoo.weights.record)."""
    from kzoo.weights import record

    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, ".tmp-" + name)
    try:
        model.save_weights(tmp)
        record.write(tmp, model)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return path


@contextlib.contextmanager
def atomic_write(path, mode="w", **kwargs):
    """Write to a temporary file beside `path`, then rename it over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a user's files get the usual mode
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
