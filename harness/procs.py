"""Process hygiene: a cell's processes die with their parent, and no leftover cell writes into a resumed run.

A job scheduler, a closed terminal or `kill -9` may end `harness run` without its process
group. On Linux each cell process asks the kernel for SIGKILL when its parent exits
(PR_SET_PDEATHSIG, inherited by nothing, so every level asks for itself): the cell's child,
torchrun (started through `python -m harness.procs`), and each torchrun worker. Elsewhere the
runner still kills its child on Ctrl-C or an error; a parent killed outright can leave it.

Every cell process also holds a shared lock on `<results>/.lock.writers` until it exits;
a run takes it exclusively before it reads the folder, so it waits for a dying writer
instead of racing it.

    die_with_parent()                            # first thing in a child process
    wait_for_writers(results_dir)                # the runner, under the folder lock
    python -m harness.procs torch.distributed.run --nproc_per_node=2 -m harness.cell ...
    with output_to(Path("results/smoke/logs/dry-run.log")):   # library noise off the terminal
        plan = render_plan(spec, root)
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

PARENT_ENV = "HARNESS_PARENT_PID"  # the pid that started this process, set by the runner for its child
WRITERS = ".lock.writers"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process when its parent exits (Linux); exit at once if the parent is already gone."""
    expected = os.environ.pop(PARENT_ENV, None)  # popped: this process's own children have another parent
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # the kernel refused (seccomp sandbox): the runner's own kill on exit still applies
    if expected and os.getppid() != int(expected):  # the parent died before the request took effect
        os._exit(1)


def hold_writer_lock(results_dir: Path) -> None:
    """A shared lock on the folder's writers file, held until this process exits (the fd stays open)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the folder lock alone applies
        return
    fd = os.open(Path(results_dir) / WRITERS, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held.append(fd)


_held: list[int] = []  # the lock's fds, kept open for the life of the process


def wait_for_writers(results_dir: Path, timeout: float = 60.0) -> None:
    """Return once no cell process of an earlier run holds the writers lock; TimeoutError naming the folder."""
    try:
        import fcntl
    except ImportError:
        return
    fd = os.open(Path(results_dir) / WRITERS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # released by the close below: this run's own cells take it shared
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{results_dir}: a cell process of an earlier run is still writing here "
                                       f"after {timeout:.0f}s; stop it and run again") from None
                time.sleep(0.2)
    finally:
        os.close(fd)


@contextmanager
def output_to(log: Path):
    """Send this process's stdout and stderr to `log` (truncated) while inside: the file descriptors themselves,
    so Python warnings, logging handlers and C extensions' own writes all land there, as a cell's do in its log.
    Nothing is redirected where the descriptors cannot be duplicated (the caller's output then shows as before)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        for s in saved:
            os.close(s)
        raise
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _flush_c_stdio()  # what C code printf'd sits in libc's buffer until flushed: into the log, not later
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for s in saved:
            os.close(s)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (Windows): nothing buffered there to lose
        pass


def main(argv: list[str]) -> None:
    """`python -m harness.procs MODULE ARGS...`: run MODULE as __main__ in a process that dies with its parent."""
    die_with_parent()
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
