"""What a run directory needs without TensorFlow: its lock (one process per run directory)
and the error that names a run's unusable files. Lock holders in tests and tools import this
module alone (no TensorFlow to load)."""

import contextlib
import fcntl
import os
import socket
import time


class CheckpointError(ValueError):
    """A run's checkpoints cannot be used as they are; the message says why and what to do."""

    foreign = False  # True: a record that names files outside its run (refused, never taken for damage)


@contextlib.contextmanager
def run_dir_lock(run_dir):
    """Hold `run_dir/.lock` while training. The kernel drops the lock when the process
    ends, however it ends, so a crash leaves no stale lock."""
    path = os.path.join(run_dir, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise CheckpointError(
            f"run directory {run_dir!r} is in use by another kzoo process ({holder}); wait for it to "
            f"finish or stop it, or pick another --run-dir."
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
