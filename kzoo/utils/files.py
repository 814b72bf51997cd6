"""Files written so that a crash never leaves a half-written one behind."""

import contextlib
import hashlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside `path` to write (by any writer that takes a path, e.g.
    tf.io.TFRecordWriter); on success it is synced and renamed over `path`, on failure removed."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a user's files get the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def staged_path(path):
    """A path with `path`'s name in a new folder beside it, for writers that insist on a name
    (`.keras`, `.onnx`) or write a folder (a SavedModel); on success what was written there
    is renamed to `path` (refused if `path` appeared meanwhile), on failure removed."""
    folder, name = os.path.split(os.path.abspath(path))
    staging = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=folder)
    try:
        yield os.path.join(staging, name)
        if os.path.exists(path):
            raise FileExistsError(f"{path!r} appeared while it was written; nothing was replaced.")
        os.rename(os.path.join(staging, name), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_write(path, mode="w", **kwargs):
    """Write to a temporary file beside `path`, then rename it over `path`."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def cache_dir(*parts):
    """kzoo's cache folder (`KZOO_CACHE_DIR`, default `~/.keras`, then `kzoo`), or a path in it:
    converted weights, downloads, the built-in data's statistics."""
    root = os.environ.get("KZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(root, "kzoo", *parts)


def sha256(path):
    """The file's sha256 hex digest, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
