"""Running a child so that nothing it does can hurt the tool: through the sandbox supervisor.

The supervisor (``sandbox/supervisor.py``, stdlib only, run by this interpreter) contains the child
and its whole tree — cgroup, PID and mount namespaces where the machine allows, a child subreaper
and a memory watchdog always — enforces the time limit and the tree's memory cap, keeps capped
stdout/stderr files, and reports how the child ended over a pipe only it holds. This side reads that
pipe, forwards progress events, turns Ctrl-C/SIGTERM into "kill the tree, then report", and sweeps
up anything that outlived the supervisor (a process still carrying the run's token in its
environment, a cgroup that is not empty).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from npu_preflight.records import frozen

SUPERVISOR = Path(__file__).resolve().parent / "sandbox" / "supervisor.py"
TOKEN_VAR = "NPU_PREFLIGHT_SANDBOX"
MAX_STATUS_LINE = 1 << 20
STOP_GRACE_S = 10.0
Containment = Literal["auto", "subreaper"]
EventFn = Callable[[Mapping[str, Any]], None]


@frozen
class ProcOutcome:
    """How a contained child ended, as the supervisor saw it."""

    returncode: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    peak_rss_bytes: int | None  # the child process's own peak (wait4)
    peak_tree_bytes: int | None = None  # the whole tree (cgroup peak, or the watchdog's PSS sum)
    memory_killed: bool = False  # the watchdog killed the tree at the memory cap
    interrupted: str | None = None  # SIGINT/SIGTERM/... when the run was stopped
    oom_kills: int = 0  # processes the cgroup's OOM killer killed
    survivors_killed: int = 0  # descendants still alive after the child ended
    containment: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Mapping[str, Any], ...] = ()
    supervisor_failure: str | None = None
    #: the largest resident size the supervisor sampled (every 100 ms) for each process of the
    #: tree, by the pid the process knows itself by
    peak_rss_by_pid: Mapping[int, int] = field(default_factory=dict)

    @property
    def signal_name(self) -> str | None:
        """``SIGKILL`` etc., or None."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"


def _pdeathsig_term() -> None:
    """In the supervisor before exec: SIGTERM it if the tool dies (its handler kills the tree)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def sweep(token: str) -> int:
    """SIGKILL every process whose environment carries ``token`` (last resort against a tree that
    outlived its supervisor); returns how many were killed."""
    needle = f"{TOKEN_VAR}={token}".encode()
    killed = 0
    for _ in range(20):
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if needle in fh.read(1 << 20):
                        found.append(int(name))
            except OSError:
                continue
        if not found:
            break
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.02)
    return killed


class Supervised:
    """A contained child in flight: ``Supervised(cmd, …).wait()`` runs it and says how it ended,
    never raising for anything the child does. ``workdir`` receives ``stdout`` and ``stderr``
    (capped); it must outlive the call.

    With ``held``, the child's stdin is a pipe from this side (:meth:`tell`) and the supervisor
    takes timing orders (:meth:`restart_clock`): a child can be started, do a first part under
    ``timeout``, say it is ready (a ``_ready`` event: the supervisor then stops its clock while it
    waits), and then be given its real work under a fresh limit, or be closed. A child that claims
    to be ready early gains nothing: from then on this side decides when it runs and for how long."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        workdir: Path,
        memory_limit: int | None = None,
        weights_dir: Path | None = None,
        containment: Containment = "auto",
        on_event: EventFn | None = None,
        cwd: Path | None = None,
        rlimit_as: int | Literal["same"] | None = "same",
        namespaces: bool = True,
        held: bool = False,
    ) -> None:
        self.token = secrets.token_hex(16)
        self.on_event = on_event
        self.workdir = workdir
        self.started_at = time.monotonic()
        child_env = dict(env)
        child_env[TOKEN_VAR] = self.token
        status_r, status_w = os.pipe()
        passed = [status_w]
        self.stdin_w: int | None = None
        self.control_w: int | None = None
        stdin_r = control_r = None
        if held:
            stdin_r, self.stdin_w = os.pipe()
            control_r, self.control_w = os.pipe()
            passed += [stdin_r, control_r]
        cfg = {
            "cmd": [str(c) for c in cmd],
            "env": child_env,
            "cwd": str(cwd) if cwd else str(Path.cwd()),
            "timeout": float(timeout),
            "memory_limit": memory_limit,
            "rlimit_as": memory_limit if rlimit_as == "same" else rlimit_as,
            "stdout": str(workdir / "stdout"),
            "stderr": str(workdir / "stderr"),
            "status_fd": status_w,
            "stdin_fd": stdin_r,
            "control_fd": control_r,
            "weights_dir": str(weights_dir) if weights_dir else None,
            "containment": containment,
            "cleanup_dir": str(workdir),
            "no_namespaces": not namespaces,
        }
        cfg_path = workdir / "supervisor.json"
        cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
        try:
            with open(workdir / "supervisor.err", "wb") as err:
                self.sup = subprocess.Popen(
                    [sys.executable, str(SUPERVISOR), str(cfg_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    pass_fds=tuple(passed),
                    start_new_session=True,
                    preexec_fn=_pdeathsig_term,
                    close_fds=True,
                )
        except BaseException:
            for fd in (status_r, self.stdin_w, self.control_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in passed:
                os.close(fd)
        self.status_r: int | None = status_r
        self.started: dict[str, Any] = {}
        self.exited: dict[str, Any] = {}
        self.ready = False  # the child said its first part is done (a ``_ready`` event)
        self.ready_after: float | None = None  # how long after its start, by the supervisor's clock
        self.eof = False
        self._buf = b""

    # -- talking to it -----------------------------------------------------------------------

    def tell(self, data: bytes) -> None:
        """Write to the child's stdin (nothing happens when it is gone: its outcome says why)."""
        fd = self.stdin_w
        if fd is None:
            return
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(fd, data) :]

    def _order(self, line: str) -> None:
        if self.control_w is not None:
            with contextlib.suppress(OSError):
                os.write(self.control_w, line.encode() + b"\n")

    def restart_clock(self, timeout: float) -> None:
        """The time limit and the reported duration count from now."""
        self._order(f"start {float(timeout)!r}")

    def terminate(self) -> None:
        """Ask the supervisor to kill the tree and report (then :meth:`wait`)."""
        with contextlib.suppress(OSError):
            self.sup.send_signal(signal.SIGTERM)

    # -- reading what it says ----------------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "start":
            self.started.update(msg)
        elif kind == "exit":
            self.exited.update(msg)
        elif kind == "ready":
            self.ready = True
            after = msg.get("after_s")
            self.ready_after = float(after) if isinstance(after, (int, float)) and after >= 0 else None
        elif kind == "event" and self.on_event is not None and isinstance(msg.get("event"), dict):
            with contextlib.suppress(Exception):  # a progress display must never stop the run
                self.on_event(msg["event"])

    def _read(self, wait_s: float) -> None:
        if self.eof or self.status_r is None:
            return
        ready, _, _ = select.select([self.status_r], [], [], wait_s)
        if not ready:
            return
        chunk = os.read(self.status_r, 1 << 16)
        if not chunk:
            self.eof = True
        self._buf += chunk
        while b"\n" in self._buf:
            line, _, self._buf = self._buf.partition(b"\n")
            self._handle(line)
        if len(self._buf) > MAX_STATUS_LINE:
            self._buf = b""

    def wait_ready(self, timeout: float) -> bool:
        """Read until the child says it is ready, it ends, or ``timeout`` passes; whether it is ready.
        Ctrl-C propagates (the caller then terminates and waits)."""
        end = time.monotonic() + timeout
        while not self.ready and not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                break
            self._read(min(left, 0.1))
        return self.ready and not self.eof

    def wait(self) -> ProcOutcome:
        """Wait for the supervisor's report. Ctrl-C kills the tree and returns an outcome with
        ``interrupted`` set."""
        interrupted: str | None = None
        stop_sent = 0.0
        sup = self.sup
        try:
            while not self.eof:
                try:
                    self._read(0.1)
                    if stop_sent and time.monotonic() - stop_sent > STOP_GRACE_S:
                        with contextlib.suppress(OSError):
                            sup.kill()
                        break
                except KeyboardInterrupt:
                    interrupted = interrupted or "SIGINT"
                    if not stop_sent:
                        stop_sent = time.monotonic()
                        self.terminate()
        finally:
            for fd in (self.status_r, self.stdin_w, self.control_w):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.status_r = self.stdin_w = self.control_w = None
            try:
                sup.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait()
        exited = self.exited
        cgroup = (self.started.get("containment") or {}).get("cgroup") or {}
        leftovers = _kill_cgroup(cgroup.get("path")) if cgroup else 0
        leftovers += sweep(self.token)
        failure = None
        if not exited:
            err_text = ""
            with contextlib.suppress(OSError):
                err_text = (self.workdir / "supervisor.err").read_bytes()[-2000:].decode("utf-8", "replace")
            failure = f"the sandbox supervisor ended ({_how(sup.returncode)}) without a report" + (
                f": {err_text.strip().splitlines()[-1]}" if err_text.strip() else ""
            )
        return ProcOutcome(
            returncode=exited.get("returncode"),
            signal=exited.get("signal"),
            timed_out=bool(exited.get("timed_out")),
            duration_s=float(exited.get("duration_s") or (time.monotonic() - self.started_at)),
            peak_rss_bytes=exited.get("child_maxrss_bytes"),
            peak_tree_bytes=exited.get("peak_tree_bytes"),
            memory_killed=bool(exited.get("memory_killed")),
            interrupted=interrupted or exited.get("interrupted"),
            oom_kills=int(exited.get("oom_kills") or 0),
            survivors_killed=int(exited.get("survivors_killed") or 0) + leftovers,
            containment=dict(exited.get("containment") or self.started.get("containment") or {}),
            events=tuple(e for e in exited.get("events") or () if isinstance(e, dict)),
            supervisor_failure=failure,
            peak_rss_by_pid=_pid_sizes(exited.get("peak_rss_by_pid")),
        )


def _how(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _kill_cgroup(path: str | None) -> int:
    """Empty and remove a cgroup the supervisor could not clean up (it was killed)."""
    if not path or not os.path.isdir(path):
        return 0
    from npu_preflight.sandbox.supervisor import Cgroup

    cg = Cgroup(path, "v2" if os.path.exists(os.path.join(path, "cgroup.kill")) else "v1")
    n = len(cg.procs())
    cg.kill()
    cg.remove()
    return n


def tail(path: Path, limit: int = 8000) -> str:
    """The last ``limit`` bytes of a file as text (a flood of output stays bounded)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _pid_sizes(value: Any) -> dict[int, int]:
    """``[[pid, bytes], …]`` from the supervisor's report, entries that are not two ints ≥ 0 left out."""
    out: dict[int, int] = {}
    for item in value if isinstance(value, list) else ():
        if isinstance(item, list) and len(item) == 2 and all(type(v) is int and v >= 0 for v in item):
            out[item[0]] = item[1]
    return out
