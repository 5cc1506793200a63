"""One run at a time per output_dir: a second is refused with who holds it; a killed holder never keeps it."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from pipeline.errors import UsageError
from pipeline.lock import LOCK_FILE, lock_output_dir

HOLD = "import sys, time; from pipeline.lock import lock_output_dir\n" \
       "with lock_output_dir(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n"


@pytest.fixture
def holder(subprocess_env, root):
    """Starts another process that holds the lock of a folder until it is killed; yields its Popen."""
    started = []

    def start(output_dir):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output_dir)], stdout=subprocess.PIPE, text=True,
                                env=subprocess_env, cwd=root)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_second_run_is_refused_until_the_first_is_gone(tmp_path, holder):
    out = tmp_path / "out"
    proc = holder(out)
    with pytest.raises(UsageError, match=rf"output_dir {out} is in use by another run \(host {socket.gethostname()}, "
                                         rf"pid {proc.pid}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d.*\); wait for it"):
        with lock_output_dir(str(out)):
            pass
    os.kill(proc.pid, signal.SIGKILL)  # the kernel releases its flock; its file stays, saying who held it
    proc.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == proc.pid
    with lock_output_dir(str(out)):
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_FILE).exists()


def test_one_process_cannot_hold_it_twice_and_other_ranks_do_not_take_it(tmp_path):
    with lock_output_dir(str(tmp_path)):
        with pytest.raises(UsageError, match=rf"pid {os.getpid()}"):
            with lock_output_dir(str(tmp_path)):
                pass
        with lock_output_dir(str(tmp_path), take=False):  # a multi-process launch's other ranks
            pass


def test_a_folder_it_created_goes_when_released_empty(tmp_path):
    with lock_output_dir(str(tmp_path / "new")):
        assert (tmp_path / "new" / LOCK_FILE).is_file()
    assert not (tmp_path / "new").exists()
    with lock_output_dir(str(tmp_path / "kept")):
        (tmp_path / "kept" / "run.json").write_text("{}")
    assert os.listdir(tmp_path / "kept") == ["run.json"]


def test_an_output_dir_that_cannot_be_a_folder_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"output_dir .*file is a file, not a folder; give the path of a folder"):
        with lock_output_dir(str(tmp_path / "file")):
            pass
    with pytest.raises(UsageError, match=r"output_dir .*file/sub cannot be created \(Not a directory\)"):
        with lock_output_dir(str(tmp_path / "file" / "sub")):
            pass


@pytest.mark.slow
def test_without_flock_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    """File systems without flock (some Lustre and FUSE mounts) fail it with ENOLCK: the file is the lock."""
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / LOCK_FILE
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": "earlier"}))
    with lock_output_dir(str(tmp_path)):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(UsageError, match=rf"pid {os.getpid()}"):  # a live holder on this host
            with lock_output_dir(str(tmp_path)):
                pass
    lock.write_text(json.dumps({"host": "another-node", "pid": dead.pid, "since": "earlier"}))
    with pytest.raises(UsageError, match=rf"host another-node, pid {dead.pid}.*delete {lock}"):  # cannot be checked
        with lock_output_dir(str(tmp_path)):
            pass
