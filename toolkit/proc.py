"""Running a child process so that nothing it does can hurt the parent.

The child gets its own session (so the whole process group can be killed), its stdout and
stderr go to files (pipes can fill and deadlock), core dumps are off, an address-space cap is
optional, and ``os.wait4`` gives the child's own peak RSS.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 3.0


@dataclass(frozen=True)
class ProcOutcome:
    """How a child ended."""

    returncode: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    peak_rss_bytes: int | None

    @property
    def signal_name(self) -> str | None:
        """``SIGKILL`` etc., or None."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"


def _limits(memory_limit: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return apply


def kill_group(pid: int) -> None:
    """TERM the child's process group, then KILL whatever is left after a grace period."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)[0], None
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.05)


def run_isolated(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    stdout_path: Path,
    stderr_path: Path,
    memory_limit: int | None = None,
    cwd: Path | None = None,
    on_poll: Callable[[], None] | None = None,
) -> ProcOutcome:
    """Run ``cmd`` isolated; never raises for anything the child does (only for a missing binary)."""
    start = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            preexec_fn=_limits(memory_limit),
            close_fds=True,
        )
    timed_out = False
    status: int | None = None
    rusage = None
    while True:
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, rusage = st, ru
            break
        if on_poll is not None:
            on_poll()
        if time.monotonic() - start > timeout:
            timed_out = True
            kill_group(proc.pid)
            try:
                pid, st, ru = os.wait4(proc.pid, 0)
                status, rusage = st, ru
            except ChildProcessError:
                status = None
            break
        time.sleep(0.05)
    # Grandchildren left behind (the child exited, its helpers did not) go with the group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.returncode = 0  # reaped above; stop Popen.__del__ from warning
    code = sig = None
    if status is not None:
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
    peak = int(rusage.ru_maxrss) * 1024 if rusage is not None else None
    return ProcOutcome(code, sig, timed_out, time.monotonic() - start, peak)


def tail(path: Path, limit: int = 8000) -> str:
    """The last ``limit`` bytes of a file as text (a flood of output stays bounded)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
