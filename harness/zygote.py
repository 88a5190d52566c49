"""Cell processes forked from one that imported the libraries once: a cell starts in ~0.1 s, not ~3.5 s.

A cell's own interpreter spends ~3.5 s of 2 CPU cores importing torch, transformers, peft (which pulls
in bitsandbytes and torch's compiler stack) and lm-eval: a minute of a 16-cell smoke matrix. The
runner starts one zygote per matrix run (`python -m harness.zygote`, with the run's environment), which
imports what every cell imports and then, per request on its stdin, forks a child that is the cell
process `python -m harness.cell` would be: its own log on stdout and stderr, its own environment and
torch threads, dying with its parent (the zygote, which dies with the runner). The zygote never runs
a tensor operation or touches CUDA, so each child starts with fresh thread pools and no device state.
It answers each request with the child's pid, and later with the child's exit code (`Popen`'s
convention: -N for a signal). Where fork is not there (Windows), or the zygote cannot start, the
runner starts `python -m harness.cell` as before.

    with Zygote(Path("results/smoke/logs/zygote.log")) as zygote:
        child = zygote.start(["logs/ab12.cell.json", "results/smoke"], env, Path("logs/ab12.log"))
        code = child.wait()          # or child.poll(), child.kill()
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

# what every cell imports (the suites import lm-eval and the metric libraries lazily); a missing optional one
# is left to the cell, which says what is missing as it does without a zygote
PRELOAD = ("harness.cell", "strategies", "harness.evals.evaluate", "harness.evals.fastlm", "harness.evals.benchmarks",
           "lm_eval.evaluator", "rouge_score.rouge_scorer", "sacrebleu")


class Child:
    """A forked cell process as the runner sees it: `poll`, `wait` and `kill` like `subprocess.Popen`'s."""

    def __init__(self, pid: int, zygote: Zygote):
        self.pid, self._zygote = pid, zygote

    def poll(self) -> int | None:
        return self._zygote.exit_code(self.pid, block=False)

    def wait(self) -> int:
        return self._zygote.exit_code(self.pid, block=True)

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Zygote:
    """The runner's side: one zygote process, its answers read by a thread into pids and exit codes."""

    def __init__(self, log: Path | None = None):
        """`log` takes the zygote's own stderr: what the libraries print as they import (the terminal stays
        quiet, as it is when each cell imports them into its own log)."""
        from harness import procs

        env = {**os.environ, procs.PARENT_ENV: str(os.getpid())}
        err = log.open("w", encoding="utf-8") if log else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "harness.zygote"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, env=env, text=True, bufsize=1)
        finally:
            if log:
                err.close()
        self._cond = threading.Condition()
        self._pids: list[int] = []
        self._codes: dict[int, int] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            msg = json.loads(line)
            with self._cond:
                if "pid" in msg:
                    self._pids.append(msg["pid"])
                else:
                    self._codes[msg["exit"]] = msg["code"]
                self._cond.notify_all()
        with self._cond:  # the zygote ended: every child it had is gone with it
            self._proc.wait()
            self._cond.notify_all()

    def start(self, argv: list[str], env: dict, log: Path) -> Child:
        """Fork a cell process running `harness.cell.main(argv)`; OSError if the zygote is gone."""
        try:
            self._proc.stdin.write(json.dumps({"argv": argv, "env": env, "log": str(log)}) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise OSError(f"the cell zygote is gone ({e})") from None
        with self._cond:
            self._cond.wait_for(lambda: self._pids or self._proc.poll() is not None)
            if not self._pids:
                raise OSError(f"the cell zygote exited with status {self._proc.returncode}")
            return Child(self._pids.pop(0), self)

    def exit_code(self, pid: int, block: bool) -> int | None:
        with self._cond:
            if block:
                self._cond.wait_for(lambda: pid in self._codes or self._proc.poll() is not None)
            if pid in self._codes:
                return self._codes[pid]
            return -signal.SIGKILL if self._proc.poll() is not None else None  # died with the zygote

    def close(self) -> None:
        """End the zygote: it exits when its stdin closes (its children, if any, die with it)."""
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_zygote(log: Path | None = None) -> Zygote | None:
    """A zygote where fork exists and the interpreter can start it; None otherwise (cells start as before)."""
    if not hasattr(os, "fork") or os.environ.get("HARNESS_NO_ZYGOTE"):
        return None
    try:
        return Zygote(log)
    except OSError:
        return None


def _child(request: dict) -> None:
    """In the forked child: become the cell process the request describes, and never return."""
    code = 1
    try:
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False)
        os.environ.clear()
        os.environ.update(request["env"])
        if threads := os.environ.get("OMP_NUM_THREADS"):  # read by OpenMP when torch loaded, in the zygote
            import torch

            torch.set_num_threads(int(threads))
        from harness import cell

        print(f"cell process {os.getpid()}, forked from the run's zygote {os.getppid()} (libraries imported once)",
              flush=True)
        code = cell.main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    from harness import procs

    procs.die_with_parent()
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    children: set[int] = set()
    stdin, pending = sys.stdin.fileno(), b""
    while True:
        if select.select([stdin], [], [], 0.2)[0]:
            data = os.read(stdin, 1 << 16)
            if not data:  # the runner closed our stdin: the run is over
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                request["env"][procs.PARENT_ENV] = str(os.getpid())  # the child's parent is this process
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children.add(pid)
                print(json.dumps({"pid": pid}), flush=True)
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                print(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)

if __name__ == "__main__":
    main()
