"""output_dir -> the one run allowed to write there at a time: `<output_dir>/.lock`.

    bert-pretrain train --config recipes/quickstart.yaml     (a second run into its output_dir is refused)

Two runs into one folder would each write checkpoints, run.json and a final model over the other's. The
lock is an exclusive `flock` on `.lock`, which the kernel releases when its process ends however it ends
(kill -9, an out-of-memory kill; on NFS, a crashed client's lock lapses with its lease), so a killed run
never leaves it held. The file says who holds it (host, pid, since when), for the message a second run
prints. Where the file system has no flock (some Lustre and FUSE mounts), the file is created with O_EXCL
instead, and a lock left by a process that no longer exists on this host is taken over.
"""

import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.cache import process_alive
from pipeline.errors import UsageError

LOCK_FILE = ".lock"
# flock() on a file system that does not implement it fails with one of these.
NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


@contextmanager
def lock_output_dir(output_dir: str, *, take: bool = True):
    """Holds `<output_dir>/.lock` for the duration (creating output_dir if need be); refused with a UsageError
    naming the run that holds it. With take=False (the other processes of a multi-process launch, which the
    main process's lock covers) it does nothing."""
    if not take:
        yield
        return
    created = _make_dir(output_dir)
    path = Path(output_dir) / LOCK_FILE
    try:
        fd = _acquire(path)
    except BaseException:
        if created:
            _remove_if_empty(output_dir)
        raise
    try:
        yield
    finally:
        # Unlinked before it is released, so a waiting run never takes a lock on a file that is gone.
        path.unlink(missing_ok=True)
        os.close(fd)
        if created:
            _remove_if_empty(output_dir)


def _make_dir(output_dir: str) -> bool:
    """Creates output_dir if it is missing; True if it did. A path that cannot be a folder is one sentence."""
    if os.path.isdir(output_dir):
        return False
    if os.path.exists(output_dir):
        raise UsageError(f"output_dir {output_dir} is a file, not a folder; give the path of a folder (new or "
                         "an earlier run's).")
    try:
        os.makedirs(output_dir)
    except OSError as e:
        raise UsageError(f"output_dir {output_dir} cannot be created ({e.strerror}); give a folder you can write "
                         "to.") from None
    return True


def _remove_if_empty(output_dir: str) -> None:
    try:
        os.rmdir(output_dir)
    except OSError:
        pass  # something else was written there: it stays


def _holder() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")})


def _refuse(path: Path, holder: dict | None) -> UsageError:
    who = (f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}" if holder
           else "a process that has not yet said which")
    return UsageError(f"output_dir {path.parent} is in use by another run ({who}); wait for it to end, or give "
                      f"another output_dir (if no such run exists any more, delete {path}).")


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _acquire(path: Path) -> int:
    for _ in range(10):  # another run may release or replace the file between our open and our lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(f"output_dir {path.parent} is not writable ({e.strerror}); give a folder you can "
                             "write to.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in NO_FLOCK:
                return _acquire_exclusive(path)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise _refuse(path, _read(path)) from None
            raise
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # its holder unlinked it on release while we waited: lock the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, _holder().encode())
        return fd
    raise _refuse(path, _read(path))


def _acquire_exclusive(path: Path) -> int:
    """The lock without flock: the file itself, created with O_EXCL; a stale one (its process is gone from this
    host) is taken over. A holder on another host cannot be checked from here, so it is refused."""
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder and holder.get("host") == socket.gethostname() and not process_alive(int(holder.get("pid", 0))):
                # Moved aside and read again, not unlinked blindly: another run that found the same stale lock
                # may already have replaced it with its own, which is put back.
                aside = path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                if _read(aside) != holder:
                    try:
                        os.link(aside, path)
                    except FileExistsError:
                        pass
                    os.unlink(aside)
                    raise _refuse(path, _read(path)) from None
                os.unlink(aside)
                continue
            raise _refuse(path, holder) from None
        os.write(fd, _holder().encode())
        return fd
    raise _refuse(path, _read(path))
