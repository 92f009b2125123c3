"""Rendering chat templates from the weights folder, in a child process with time and memory limits.

A chat template is code from the folder: Jinja2's immutable sandbox stops it from touching Python
objects, but not from looping ``range(100000)`` inside ``range(100000)`` or building a 4 GB
string. So templates render in a forked child (fast: Jinja2 is already imported) with
``RLIMIT_AS`` and ``RLIMIT_CPU`` set and a wall-clock deadline; the parent reads at most a small
JSON result from a pipe and kills the child if it overstays.

Each template is tried with several conversation shapes, as transformers' users send them: some
templates refuse a system turn on purpose (Mistral's ``raise_exception('Conversation roles must
alternate user/assistant/user/assistant/...')``), so a template passes when any shape renders.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
from collections.abc import Mapping
from typing import Any

from npu_preflight.records import frozen

TIMEOUT_S = 5.0
MEMORY_BYTES = 512 * 1024 * 1024
MAX_RESULT = 256 * 1024
#: How long after a child's deadline the parent stops waiting for it (the child's own alarm ends it).
GRACE_S = 2.0

SHAPES: dict[str, list[dict[str, str]]] = {
    "system, user, assistant, user": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye"},
    ],
    "user, assistant, user": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye"},
    ],
    "user": [{"role": "user", "content": "Hello"}],
}


@frozen
class RenderResult:
    """One template: the conversation shapes that rendered, and why the others did not."""

    ok_shapes: tuple[str, ...]
    errors: Mapping[str, str]
    limit: str | None = None  # "time" or "memory" when the child hit a limit

    @property
    def ok(self) -> bool:
        """At least one conversation shape rendered."""
        return bool(self.ok_shapes)


def _render_all(templates: Mapping[str, str], tokens: Mapping[str, str | None]) -> dict[str, Any]:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    out: dict[str, Any] = {}
    for name, text in templates.items():
        ok: list[str] = []
        errors: dict[str, str] = {}
        try:
            tpl = env.from_string(text)
        except Exception as exc:  # noqa: BLE001 - any template failure is the result
            out[name] = {"ok": [], "errors": {"(parse)": f"{type(exc).__name__}: {exc}"[:500]}}
            continue
        for shape, messages in SHAPES.items():
            try:
                tpl.render(messages=messages, add_generation_prompt=True, tools=None, **tokens)
                ok.append(shape)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                errors[shape] = f"{type(exc).__name__}: {exc}"[:500]
        out[name] = {"ok": ok, "errors": errors}
    return out


def _vm_size() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


#: Templates rendering at once. A runaway template may take its child's whole memory cap, so a
#: folder listing many templates costs at most this many caps at a time; the rest wait their turn.
MAX_CHILDREN = 2


def start_renders(
    templates: Mapping[str, str],
    tokens: Mapping[str, str | None],
    timeout: float = TIMEOUT_S,
    memory: int = MEMORY_BYTES,
) -> RenderBatch:
    """Fork the first children and return at once: the run goes on (parsing a 6 MB tokenizer.json,
    say) while the templates render; :meth:`RenderBatch.collect` waits for them."""
    batch = RenderBatch(templates, tokens, timeout, memory)
    try:
        batch.fill()
    except BaseException:
        batch.cancel()
        raise
    return batch


class RenderBatch:
    """Templates rendering in at most :data:`MAX_CHILDREN` children at a time, in order."""

    def __init__(
        self, templates: Mapping[str, str], tokens: Mapping[str, str | None], timeout: float, memory: int
    ) -> None:
        self._queue = list(templates.items())
        self._order = list(templates)
        self._tokens = dict(tokens)
        self._timeout = timeout
        self._memory = memory
        self._running: dict[str, PendingRender] = {}
        #: every child started so far (tests and the runner's clean-up look at them)
        self.started: list[PendingRender] = []

    def fill(self) -> None:
        """Start queued templates until :data:`MAX_CHILDREN` render."""
        while self._queue and len(self._running) < MAX_CHILDREN:
            name, text = self._queue.pop(0)
            p = PendingRender.start(name, text, self._tokens, self._timeout, self._memory)
            self._running[name] = p
            self.started.append(p)

    def collect(self) -> dict[str, RenderResult]:
        """Every template's result, in order (each within its own deadline, counted from its start)."""
        try:
            out: dict[str, RenderResult] = {}
            for name in self._order:
                self.fill()
                out[name] = self._running.pop(name).result()
            return out
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Kill and reap every child not yet collected and start no more (an interrupted run
        leaves none behind)."""
        self._queue.clear()
        running, self._running = self._running, {}
        for p in running.values():
            p.cancel()


class PendingRender:
    """A forked child rendering one template; its result is read once, by :meth:`result`."""

    def __init__(self, pid: int, fd: int, deadline: float, timeout: float, memory: int) -> None:
        self.pid = pid
        self._fd = fd
        self._deadline = deadline
        self._timeout = timeout
        self._memory = memory
        self._reaped = False

    @classmethod
    def start(
        cls, name: str, text: str, tokens: Mapping[str, str | None], timeout: float, memory: int
    ) -> PendingRender:
        r, w = os.pipe()
        base = _vm_size()
        pid = os.fork()
        if pid == 0:  # the child: limits, render, one write, exit without cleanup
            code = 0
            try:
                os.close(r)
                if base:
                    resource.setrlimit(resource.RLIMIT_AS, (base + memory, base + memory))
                cpu = int(timeout) + 1
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                # The wall-clock limit is the child's own: the parent may collect it long after its
                # deadline (renders start with the run), and a render that finished in time must
                # not be judged by when it was collected.
                signal.signal(signal.SIGALRM, signal.SIG_DFL)  # whatever the parent installed
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    result: dict[str, Any] = _render_all({name: text}, tokens)[name]
                except MemoryError:
                    result = {"limit": "memory"}
                data = json.dumps(result).encode("utf-8", "backslashreplace")[:MAX_RESULT]
                while data:
                    data = data[os.write(w, data) :]
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        return cls(pid, r, time.monotonic() + timeout, timeout, memory)

    def cancel(self) -> None:
        """Kill the child if it still runs, and reap it."""
        if self._reaped:
            return
        self._reaped = True
        os.close(self._fd)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)

    def result(self) -> RenderResult:
        """Wait (at most until the deadline) for the child's result and classify it."""
        if self._reaped:
            raise RuntimeError("this render was already collected or cancelled")
        r, timeout, memory = self._fd, self._timeout, self._memory
        chunks: list[bytes] = []
        size = 0
        timed_out = finished = False
        # The child ends itself at its deadline (SIGALRM); the parent waits until a grace after it,
        # for a child that did not, but always reads what is already in the pipe: renders start with
        # the run and may be collected long after they finished.
        backstop = max(self._deadline + GRACE_S, time.monotonic())
        try:
            while True:
                left = backstop - time.monotonic()
                ready, _, _ = select.select([r], [], [], max(left, 0.0))
                if not ready:
                    if left <= 0:
                        timed_out = True
                        break
                    continue
                chunk = os.read(r, 65536)
                if not chunk:
                    finished = True
                    break
                size += len(chunk)
                if size <= MAX_RESULT:
                    chunks.append(chunk)
                if time.monotonic() > backstop + GRACE_S:  # still writing long after: stop reading
                    timed_out = True
                    break
        finally:
            self._reaped = True
            os.close(r)
            if not finished:  # out of time, or interrupted while waiting (Ctrl-C): leave no child
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _, status = os.waitpid(self.pid, 0)
        limits = (signal.SIGXCPU, signal.SIGKILL, signal.SIGALRM)
        if timed_out or (os.WIFSIGNALED(status) and os.WTERMSIG(status) in limits):
            return RenderResult((), {"(all)": f"rendering took longer than {timeout:.0f}s"}, "time")
        try:
            doc = json.loads(b"".join(chunks))
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("limit") == "memory":
            if isinstance(doc, dict) or os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
                return RenderResult(
                    (), {"(all)": f"rendering needed more than {memory // 2**20} MiB of memory"}, "memory"
                )
            return RenderResult((), {"(all)": "the renderer returned no result"})
        ok = tuple(str(s) for s in doc.get("ok") or [] if isinstance(s, str))
        errors = {str(k): str(v) for k, v in (doc.get("errors") or {}).items()}
        return RenderResult(ok, errors)
