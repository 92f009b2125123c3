"""The sandbox supervisor: ``python supervisor.py CONFIG.json``. Stdlib only.

It stands between the tool and a child it must contain (the environment probe, the generator
init): it starts the child and everything the child starts inside one containment, enforces the
time limit and the memory cap on the whole process tree, drains the child's output into capped
files, reaps the child with ``wait4`` (so a killed child keeps its signal and peak memory), kills
every descendant before it exits, and reports all of that to the tool over a pipe that only the
supervisor holds.

Containment, strongest first (each recorded in the report):

* a **cgroup** when the machine lets this user create one (cgroup v2 with the memory controller
  delegated, else the v1 memory controller): ``memory.max`` / ``memory.limit_in_bytes`` is the cap
  on the whole tree, and the cgroup's process list is how every descendant is found and killed,
  whatever session it makes;
* as root, a **PID namespace** (the child is its init: when it ends, the kernel kills everything
  left in it) and a private **mount namespace** with the weights folder bind-mounted read-only;
* always: this process is a **child subreaper** (orphans reparent to it, so ``setsid`` escapes
  nothing), the child gets ``PR_SET_PDEATHSIG`` (it dies with the supervisor), the supervisor gets
  one from the tool (its SIGTERM handler kills the tree), and without a cgroup a **watchdog** sums
  the tree's memory (PSS) every 100 ms and kills the tree past the cap. ``RLIMIT_AS`` is set per
  process as well.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import json
import os
import resource
import select
import signal
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

HEAD = 64 * 1024
TAIL = 256 * 1024
MAX_EVENT_LINE = 64 * 1024
MAX_EVENTS = 2000
WATCH_S = 0.1
#: The processes whose resident size is sampled (a fork bomb is not followed further).
MAX_SAMPLED = 256
GRACE_S = 2.0

_libc: Any = None


def libc() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def prctl(option: int, arg: int) -> None:
    if libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def unshare(flags: int) -> None:
    if libc().unshare(flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    s = source.encode() if source else None
    t = target.encode()
    f = fstype.encode() if fstype else None
    if libc().mount(s, t, f, ctypes.c_ulong(flags), None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {target}: {os.strerror(e)}")


# -- cgroups --------------------------------------------------------------------------------------


def _read(path: str, limit: int = 65536) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) from /proc/self/mountinfo."""
    out = []
    for line in (_read("/proc/self/mountinfo", 1 << 20) or "").splitlines():
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) >= 5 and len(rparts) >= 3:
            out.append((parts[4], rparts[0], rparts[2]))
    return out


class Cgroup:
    """A cgroup made for one child's tree."""

    def __init__(self, path: str, version: str) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls, limit: int | None, tag: str) -> tuple[Cgroup | None, str | None]:
        """A v2 cgroup with the memory controller, else a v1 memory cgroup; None when neither can
        be made here. Returns (cgroup or None, why not)."""
        own: dict[str, str] = {}
        for line in (_read("/proc/self/cgroup") or "").splitlines():
            _hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            own[controllers] = path
        mounts = _mounts()
        why: list[str] = []
        for point, fstype, _opts in mounts:
            if fstype == "cgroup2" and "" in own:
                base = point + own[""]
                ctrl = (_read(os.path.join(base, "cgroup.subtree_control")) or "").split()
                if "memory" not in ctrl:
                    why.append("cgroup v2: the memory controller is not delegated to this cgroup")
                    continue
                cg = cls._make(base, tag, "v2")
                if cg is None:
                    why.append("cgroup v2: cannot create a child cgroup")
                    continue
                try:
                    if limit:
                        _write(os.path.join(cg.path, "memory.max"), str(limit))
                        if os.path.exists(os.path.join(cg.path, "memory.swap.max")):
                            _write(os.path.join(cg.path, "memory.swap.max"), "0")
                    if os.path.exists(os.path.join(cg.path, "memory.oom.group")):
                        _write(os.path.join(cg.path, "memory.oom.group"), "1")
                    return cg, None
                except OSError as exc:
                    cg.remove()
                    why.append(f"cgroup v2: {exc}")
        for point, fstype, opts in mounts:
            if fstype == "cgroup" and "memory" in opts.split(","):
                key = next((k for k in own if "memory" in k.split(",")), None)
                if key is None:
                    continue
                cg = cls._make(point + own[key], tag, "v1")
                if cg is None:
                    why.append("cgroup v1 memory: cannot create a child cgroup")
                    continue
                try:
                    if limit:
                        _write(os.path.join(cg.path, "memory.limit_in_bytes"), str(limit))
                        memsw = os.path.join(cg.path, "memory.memsw.limit_in_bytes")
                        if os.path.exists(memsw):
                            try:
                                _write(memsw, str(limit))
                            except OSError:
                                pass
                    return cg, None
                except OSError as exc:
                    cg.remove()
                    why.append(f"cgroup v1 memory: {exc}")
        return None, "; ".join(why) or "no cgroup hierarchy with a memory controller is mounted"

    @classmethod
    def _make(cls, base: str, tag: str, version: str) -> Cgroup | None:
        path = os.path.join(base, tag)
        try:
            os.mkdir(path)
        except OSError:
            return None
        return cls(path, version)

    def join_self(self) -> None:
        # "0" is the writing process, whatever PID namespace it is in.
        _write(os.path.join(self.path, "cgroup.procs"), "0")

    def procs(self) -> list[int]:
        text = _read(os.path.join(self.path, "cgroup.procs"), 1 << 20) or ""
        return [int(x) for x in text.split() if x.isdigit()]

    def usage(self) -> int | None:
        name = "memory.current" if self.version == "v2" else "memory.usage_in_bytes"
        text = _read(os.path.join(self.path, name))
        return int(text) if text and text.strip().isdigit() else None

    def peak(self) -> int | None:
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        text = _read(os.path.join(self.path, name))
        return int(text) if text and text.strip().isdigit() else None

    def oom_kills(self) -> int:
        if self.version == "v2":
            text = _read(os.path.join(self.path, "memory.events")) or ""
            for line in text.splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and v.strip().isdigit():
                    return int(v)
            return 0
        text = _read(os.path.join(self.path, "memory.oom_control")) or ""
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill" and v.strip().isdigit():
                return int(v)
        failcnt = _read(os.path.join(self.path, "memory.failcnt"))
        return 1 if failcnt and failcnt.strip().isdigit() and int(failcnt) > 0 and self._under_oom() else 0

    def _under_oom(self) -> bool:
        text = _read(os.path.join(self.path, "memory.oom_control")) or ""
        return "under_oom 1" in text

    def kill(self) -> None:
        """SIGKILL every process in the cgroup until it is empty (cgroup.kill where the kernel has it)."""
        killer = os.path.join(self.path, "cgroup.kill")
        if self.version == "v2" and os.path.exists(killer):
            try:
                _write(killer, "1")
            except OSError:
                pass
        for _ in range(200):
            pids = self.procs()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return
                time.sleep(0.02)


# -- the process tree -----------------------------------------------------------------------------


def children_map() -> dict[int, list[int]]:
    """ppid → [pid] for every process visible in /proc."""
    out: dict[int, list[int]] = collections.defaultdict(list)
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        text = _read(f"/proc/{name}/stat", 4096)
        if not text:
            continue
        rest = text.rpartition(")")[2].split()
        if len(rest) >= 2 and rest[1].lstrip("-").isdigit():
            out[int(rest[1])].append(int(name))
    return out


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (orphans reparent to us as subreaper, so the tree is complete)."""
    kids = children_map()
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        for c in kids.get(p, ()):
            out.append(c)
            stack.append(c)
    return out


def rss_as_seen_inside(pid: int) -> tuple[int, int] | None:
    """``(pid as the process itself sees it, resident bytes)``: the pid from the last field of
    ``NSpid`` (a process in a PID namespace knows itself by its number there), or None when the
    process is gone."""
    text = _read(f"/proc/{pid}/status", 8192)
    if not text:
        return None
    inner, rss = pid, 0
    for line in text.splitlines():
        if line.startswith("NSpid:") and line.split()[1:]:
            inner = int(line.split()[-1])
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return inner, rss


def pss(pid: int) -> int:
    """Proportional set size (shared pages counted once across the tree), else RSS."""
    text = _read(f"/proc/{pid}/smaps_rollup", 8192)
    if text:
        for line in text.splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    seen = rss_as_seen_inside(pid)
    return seen[1] if seen is not None else 0


class Sink:
    """A capped output file: the first HEAD bytes, then only the last TAIL bytes (a flood of any
    size costs at most HEAD + TAIL on disk)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh = open(path, "wb")
        self.head = 0
        self.tail = bytearray()
        self.dropped = 0

    def write(self, data: bytes) -> None:
        if self.head < HEAD:
            take = data[: HEAD - self.head]
            self.fh.write(take)
            self.head += len(take)
            data = data[len(take) :]
        if data:
            self.tail += data
            if len(self.tail) > TAIL:
                cut = len(self.tail) - TAIL
                self.dropped += cut
                del self.tail[:cut]

    def close(self) -> None:
        if self.dropped:
            self.fh.write(f"\n[… {self.dropped:,} bytes of output not kept …]\n".encode())
        self.fh.write(bytes(self.tail))
        self.fh.close()


class Supervisor:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.status_fd = int(cfg["status_fd"])
        self.stop: str | None = None
        self.cg: Cgroup | None = None
        self.use_ns = False
        self.pid = 0
        self.started = time.monotonic()
        self.child_status: int | None = None
        self.child_maxrss: int | None = None
        self.hold_w: int | None = None
        self.child_ended: float | None = None
        self._last_stage: str | None = None
        self.containment: dict[str, Any] = {
            "subreaper": False,
            "cgroup": None,
            "pid_namespace": False,
            "read_only_mount": False,
        }
        self.tool_pid = os.getppid()
        self.peak_tree = 0
        #: the largest resident size each process of the tree was seen with, by its own pid
        self.peak_rss: dict[int, int] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_EVENTS)
        self.last_forward = 0.0
        self.deadline = float("inf")
        self.awaiting_ready = cfg.get("control_fd") is not None  # a held child, not yet started

    def send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg, default=str) + "\n").encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(self.status_fd, data) :]
        except OSError:
            pass  # the tool is gone; keep cleaning up

    def on_signal(self, signum: int, frame: Any) -> None:
        self.stop = signal.Signals(signum).name

    # -- start ---------------------------------------------------------------------------------

    def setup(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        try:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
            self.containment["subreaper"] = True
        except OSError as exc:
            self.containment["subreaper_error"] = str(exc)
        mode = self.cfg.get("containment", "auto")
        limit = self.cfg.get("memory_limit")
        if mode in ("auto", "cgroup"):
            cg, why = Cgroup.create(limit, f"npu-preflight-{os.getpid()}-{int(time.time() * 1000) % 10**9}")
            if cg is not None:
                self.cg = cg
                self.containment["cgroup"] = {"version": cg.version, "path": cg.path}
            else:
                self.containment["cgroup_unavailable"] = why
        self.use_ns = mode == "auto" and os.geteuid() == 0 and not self.cfg.get("no_namespaces")
        if self.use_ns:
            try:
                unshare(CLONE_NEWPID)
                self.containment["pid_namespace"] = True
            except OSError as exc:
                self.containment["pid_namespace_error"] = str(exc)
        self.containment["memory_cap"] = (
            None if not limit else ("cgroup" if self.cg is not None else "watchdog (sum of the tree's PSS)")
        )
        self.containment["rlimit_as"] = self.cfg.get("rlimit_as")

    def _exec_child(self, out_w: int, err_w: int, ev_w: int) -> None:
        """In the process that becomes the init child: limits, descriptors, exec (never returns)."""
        cfg = self.cfg
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if cfg.get("rlimit_as"):
            resource.setrlimit(resource.RLIMIT_AS, (int(cfg["rlimit_as"]), int(cfg["rlimit_as"])))
        stdin_fd = cfg.get("stdin_fd")
        os.dup2(int(stdin_fd) if stdin_fd is not None else os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(ev_w, 3)
        os.set_inheritable(3, True)
        os.closerange(4, 65536)
        os.chdir(cfg.get("cwd") or "/")
        os.execve(cfg["cmd"][0], cfg["cmd"], cfg["env"])

    def _reaper(self, child: int, rep_w: int, hold_r: int) -> None:
        """PID 1 of the namespace: reap everything until the init child ends, report its exact wait
        status and peak RSS, then wait to be killed (killing PID 1 ends the whole namespace).
        The init child itself is PID 2, so it keeps ordinary signal semantics."""
        while True:
            try:
                pid, status, ru = os.wait4(-1, 0)
            except ChildProcessError:
                status, ru = 0, None
                break
            except InterruptedError:
                continue
            if pid == child:
                break
        msg = {"status": status, "maxrss": ru.ru_maxrss * 1024 if ru is not None else None}
        os.write(rep_w, (json.dumps(msg) + "\n").encode())
        try:
            os.read(hold_r, 1)
        finally:
            os._exit(0)

    def start_child(self) -> tuple[int, int, int, int | None]:
        cfg = self.cfg
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ev_r, ev_w = os.pipe()
        sync_r, sync_w = os.pipe()
        rep_r, rep_w = os.pipe()
        hold_r, hold_w = os.pipe()
        ns = bool(self.containment["pid_namespace"])
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                for fd in (sync_w, rep_r, hold_w):
                    os.close(fd)
                if cfg.get("control_fd") is not None:
                    os.close(int(cfg["control_fd"]))  # the tool's orders are for the supervisor only
                os.setsid()
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if not ns and os.getppid() != me:
                    os._exit(125)
                if self.cg is not None:
                    self.cg.join_self()
                os.read(sync_r, 1)  # wait until the supervisor has recorded the child (no lost fast exits)
                os.close(sync_r)
                weights = cfg.get("weights_dir")
                if self.use_ns and weights:
                    try:
                        unshare(CLONE_NEWNS)
                        mount(None, "/", None, MS_REC | MS_PRIVATE)
                        mount(weights, weights, None, MS_BIND | MS_REC)
                        mount(None, weights, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
                        os.write(ev_w, b'{"stage": "_sandbox", "read_only_mount": true}\n')
                    except OSError as exc:
                        os.write(ev_w, json.dumps({"stage": "_sandbox", "mount_error": str(exc)}).encode() + b"\n")
                if not ns:
                    os.close(rep_w)
                    os.close(hold_r)
                    self._exec_child(out_w, err_w, ev_w)
                child = os.fork()
                if child == 0:
                    os.close(rep_w)
                    os.close(hold_r)
                    self._exec_child(out_w, err_w, ev_w)
                for fd in (out_w, err_w, ev_w):
                    os.close(fd)
                self._reaper(child, rep_w, hold_r)
            except BaseException as exc:  # noqa: BLE001 - nothing may escape the forked child
                try:
                    os.write(2, f"npu-preflight sandbox: cannot start the child: {exc}\n".encode())
                finally:
                    os._exit(127)
        for fd in (out_w, err_w, ev_w, sync_r, rep_w, hold_r):
            os.close(fd)
        if cfg.get("stdin_fd") is not None:
            os.close(int(cfg["stdin_fd"]))  # only the child reads what the tool tells it
        self.pid = pid
        self.hold_w = hold_w
        self.started = time.monotonic()
        os.write(sync_w, b"x")
        os.close(sync_w)
        if not ns:
            os.close(rep_r)
            os.close(hold_w)
            self.hold_w = None
            return out_r, err_r, ev_r, None
        return out_r, err_r, ev_r, rep_r

    # -- run -----------------------------------------------------------------------------------

    def tree(self) -> list[int]:
        if self.cg is not None:
            return self.cg.procs()
        return descendants(os.getpid())

    def sample_rss(self, pids: list[int]) -> None:
        """Keep each process's largest resident size seen (which rank held the memory when the
        tree went over its cap: the launcher may die with the ranks and never say)."""
        for p in pids[:MAX_SAMPLED]:
            seen = rss_as_seen_inside(p)
            if seen is not None and (seen[0] in self.peak_rss or len(self.peak_rss) < MAX_SAMPLED):
                self.peak_rss[seen[0]] = max(self.peak_rss.get(seen[0], 0), seen[1])

    def tree_memory(self, pids: list[int]) -> int:
        if self.cg is not None:
            u = self.cg.usage()
            if u is not None:
                return u
        return sum(pss(p) for p in pids)

    def kill_tree(self) -> int:
        """SIGKILL the child and every descendant; returns how many processes were killed."""
        killed = set()
        for _ in range(50):
            pids = [p for p in (self.tree() if self.cg is not None else descendants(os.getpid())) if p != os.getpid()]
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.add(p)
                except OSError:
                    pass
            self.reap()
            time.sleep(0.01)
        if self.cg is not None:
            self.cg.kill()
        self.reap()
        return len(killed)

    def reap(self) -> None:
        """Reap every exited child (our init child among them: its status and rusage are kept)."""
        while True:
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self.child_status is None:
                # Without a namespace this is the init child itself; with one it is the reaper,
                # which died before reporting (its own status is the best evidence left).
                self.child_status = status
                self.child_maxrss = ru.ru_maxrss * 1024
                self.child_ended = time.monotonic()

    def _reported(self, raw: bytes) -> None:
        """The namespace's reaper reported how the init child ended."""
        try:
            msg = json.loads(raw.split(b"\n", 1)[0])
        except ValueError:
            return
        if isinstance(msg, dict) and isinstance(msg.get("status"), int) and self.child_status is None:
            self.child_status = msg["status"]
            mr = msg.get("maxrss")
            self.child_maxrss = mr if isinstance(mr, int) else None
            self.child_ended = time.monotonic()

    def forward_event(self, line: bytes) -> None:
        if len(line) > MAX_EVENT_LINE:
            return
        try:
            ev = json.loads(line)
        except ValueError:
            return
        if not isinstance(ev, dict) or not isinstance(ev.get("stage"), str):
            return
        if ev["stage"] == "_ready":
            # The child's first part is done and it now waits for the tool, which either closes it
            # or gives it its work with a fresh limit (``start``): no limit while it only waits.
            # Believed once, and only from a child the tool holds and has not yet started: any
            # other child saying it is ready keeps its limit.
            if self.awaiting_ready:
                self.awaiting_ready = False
                self.deadline = float("inf")
                self.send({"type": "ready", "after_s": round(time.monotonic() - self.started, 4)})
            return
        if ev["stage"] == "_sandbox":
            if ev.get("read_only_mount"):
                self.containment["read_only_mount"] = True
            elif ev.get("mount_error"):
                self.containment["read_only_mount_error"] = str(ev["mount_error"])[:300]
            return
        self.events.append(ev)
        now = time.monotonic()
        if now - self.last_forward >= 0.05 or ev.get("stage") != self._last_stage:
            self.last_forward = now
            self._last_stage = ev.get("stage")
            self.send({"type": "event", "event": ev})

    def order(self, line: bytes) -> None:
        """A timing order from the tool: ``start SECONDS`` (the limit, and the reported duration,
        count from now)."""
        word, _, arg = line.decode("ascii", "replace").strip().partition(" ")
        if word == "start":
            try:
                seconds = float(arg)
            except ValueError:
                return
            self.awaiting_ready = False
            self.started = time.monotonic()
            self.deadline = self.started + seconds

    def run(self) -> None:
        cfg = self.cfg
        out_r, err_r, ev_r, rep_r = self.start_child()
        self.send({"type": "start", "pid": self.pid, "containment": self.containment})
        sinks = {out_r: Sink(cfg["stdout"]), err_r: Sink(cfg["stderr"])}
        ev_buf = bytearray()
        open_fds = {out_r, err_r, ev_r}
        rep_buf = b""
        self.deadline = self.started + float(cfg["timeout"])
        limit = cfg.get("memory_limit")
        timed_out = memory_killed = False
        next_watch = 0.0
        control = cfg.get("control_fd")
        control_buf = b""
        while True:
            if open_fds or rep_r is not None or control is not None:
                watch = list(open_fds) + [fd for fd in (rep_r, control) if fd is not None]
                try:
                    ready, _, _ = select.select(watch, [], [], WATCH_S)
                except InterruptedError:
                    ready = []
                for fd in ready:
                    if fd == control:
                        chunk = os.read(fd, 4096)
                        if not chunk:
                            os.close(fd)
                            control = None  # the tool closed it: the clock stays as it is
                            continue
                        control_buf += chunk
                        while b"\n" in control_buf:
                            line, _, control_buf = control_buf.partition(b"\n")
                            self.order(line)
                        continue
                    if fd == rep_r:
                        chunk = os.read(fd, 4096)
                        rep_buf += chunk
                        if b"\n" in rep_buf or not chunk:
                            self._reported(rep_buf)
                            os.close(fd)
                            rep_r = None
                        continue
                    try:
                        data = os.read(fd, 1 << 16)
                    except OSError:
                        data = b""
                    if not data:
                        open_fds.discard(fd)
                        continue
                    if fd == ev_r:
                        ev_buf += data
                        while b"\n" in ev_buf:
                            line, _, rest = bytes(ev_buf).partition(b"\n")
                            ev_buf = bytearray(rest)
                            self.forward_event(line)
                        if len(ev_buf) > MAX_EVENT_LINE:
                            ev_buf.clear()
                    else:
                        sinks[fd].write(data)
            else:
                time.sleep(WATCH_S)
            self.reap()
            now = time.monotonic()
            if now >= next_watch:
                next_watch = now + WATCH_S
                pids = [p for p in self.tree() if p != os.getpid()]
                mem = self.tree_memory(pids)
                self.peak_tree = max(self.peak_tree, mem)
                self.sample_rss(pids)
                if limit and self.cg is None and mem > limit and self.child_status is None:
                    memory_killed = True
                    self.kill_tree()
            if self.child_status is not None:
                break
            if self.stop is not None or os.getppid() != self.tool_pid:
                self.stop = self.stop or "the tool died"
                self.kill_tree()
                break
            if now >= self.deadline:
                timed_out = True
                self.kill_tree()
                break
        # The child is done (or killed): nothing it started may outlive it. (With a namespace the
        # reaper, PID 1, is still there: it is not a survivor, and killing it ends the namespace.)
        survivors = [p for p in self.tree() if p not in (os.getpid(), self.pid)]
        killed_after = len(survivors)
        self.kill_tree()
        end_wait = time.monotonic() + GRACE_S
        while self.child_status is None and time.monotonic() < end_wait:
            self.reap()
            time.sleep(0.01)
        end_drain = time.monotonic() + GRACE_S
        while open_fds and time.monotonic() < end_drain:
            ready, _, _ = select.select(list(open_fds), [], [], 0.05)
            for fd in ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    open_fds.discard(fd)
                elif fd in sinks:
                    sinks[fd].write(data)
                elif fd == ev_r:
                    ev_buf += data
                    while b"\n" in ev_buf:
                        line, _, rest = bytes(ev_buf).partition(b"\n")
                        ev_buf = bytearray(rest)
                        self.forward_event(line)
        for sink in sinks.values():
            sink.close()
        for pipe_fd in (out_r, err_r, ev_r, rep_r, self.hold_w, control):
            if pipe_fd is None:
                continue
            try:
                os.close(pipe_fd)
            except OSError:
                pass
        oom_kills = 0
        if self.cg is not None:
            cg_peak = self.cg.peak()
            if cg_peak:
                self.peak_tree = max(self.peak_tree, cg_peak)
            oom_kills = self.cg.oom_kills()
            self.cg.remove()
        status = self.child_status
        code = sig = None
        if status is not None:
            if os.WIFEXITED(status):
                code = os.WEXITSTATUS(status)
            elif os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
        self.send(
            {
                "type": "exit",
                "returncode": code,
                "signal": sig,
                "timed_out": timed_out,
                "memory_killed": memory_killed,
                "interrupted": self.stop,
                "duration_s": round((self.child_ended or time.monotonic()) - self.started, 4),
                "child_maxrss_bytes": self.child_maxrss,
                "peak_tree_bytes": self.peak_tree or None,
                "peak_rss_by_pid": sorted(self.peak_rss.items(), key=lambda kv: -kv[1])[:64],
                "oom_kills": oom_kills,
                "survivors_killed": killed_after,
                "containment": self.containment,
                "events": list(self.events)[-200:],
            }
        )
        if os.getppid() != self.tool_pid and cfg.get("cleanup_dir"):
            import shutil

            shutil.rmtree(cfg["cleanup_dir"], ignore_errors=True)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        cfg = json.load(fh)
    sup = Supervisor(cfg)
    sup.setup()
    sup.run()


if __name__ == "__main__":
    main()
