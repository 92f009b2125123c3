"""The sandbox contains the init: every descendant, every byte, every exit path.

Real processes throughout (hostile generator factories in tests/sandbox_factories.py). Each case
ends with the right outcome, a complete report set where the CLI runs, no surviving process — found
by a marker every descendant inherits in its environment, which works across PID namespaces and
after a process has re-parented itself away with setsid — and no temporary directory left.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from npu_preflight.context import Context, RunOptions
from npu_preflight.sandbox import InitOutcome
from npu_preflight.units import parse_size
from tests.conftest import MINDIE_MC, PYTHON, REPO, validate_report

MC = {**MINDIE_MC, "max_seq_len": 256, "max_batch_size": 1}
MARK = "PREFLIGHT_TEST_MARK"
pytestmark = pytest.mark.slow


def marked(mark: str) -> list[int]:
    """Live processes (not zombies) whose environment carries the test's mark."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle not in fh.read(1 << 20):
                    continue
            with open(f"/proc/{name}/stat") as fh:
                state = fh.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(int(name))
    return out


@pytest.fixture
def tmpdir_mark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A private TMPDIR (to see that no temporary directory is left) and a process mark."""
    t = tmp_path / "tmp"
    t.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    mark = uuid.uuid4().hex
    yield t, mark
    left = [p for p in marked(mark)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes survived the run: {left}"
    assert [p.name for p in t.iterdir() if p.name.startswith("preflight-")] == []


def init(folder: Path, mark: str, containment: str = "auto", **opts: Any) -> InitOutcome:
    os.chdir(REPO)
    env = dict(os.environ)
    env[MARK] = mark
    ctx = Context(folder, MC, options=RunOptions(device="cpu", containment=containment, **opts), env=env)  # type: ignore[arg-type]
    return ctx.init_outcome


CONTAINMENTS = ["auto", "subreaper"]


@pytest.mark.parametrize("containment", CONTAINMENTS)
@pytest.mark.parametrize("factory", ["escape_setsid", "escape_setpgid"])
def test_descendants_that_leave_the_session_are_killed(
    llama: Path, tmpdir_mark: tuple[Path, str], containment: str, factory: str
) -> None:
    _, mark = tmpdir_mark
    o = init(llama, mark, containment, generator=f"tests.sandbox_factories:{factory}")
    assert o.classified.outcome == "ok", o.to_dict()
    assert o.proc is not None and o.proc.survivors_killed >= 1
    assert marked(mark) == []


def _cgroup_available() -> str | None:
    from npu_preflight.sandbox.supervisor import Cgroup

    cg, why = Cgroup.create(None, f"npu-preflight-test-{os.getpid()}")
    if cg is None:
        return why
    cg.remove()
    return None


@pytest.mark.parametrize("containment", CONTAINMENTS)
def test_memory_cap_holds_across_forked_children(llama: Path, tmpdir_mark: tuple[Path, str], containment: str) -> None:
    if containment == "auto":
        why = _cgroup_available()
        if why:
            pytest.skip(f"no cgroup memory controller this user can use here: {why}")
    _, mark = tmpdir_mark
    o = init(llama, mark, containment, generator="tests.sandbox_factories:forked_hogs", memory_limit=parse_size("1GiB"))
    assert o.classified.outcome == "oom-host", o.to_dict()
    assert o.proc is not None
    cap = o.proc.containment.get("memory_cap") or ""
    assert ("cgroup" in cap) if containment == "auto" else ("watchdog" in cap)
    # the whole tree never ran far past the cap (six children would have used 4.2 GiB)
    assert (o.proc.peak_tree_bytes or 0) < 2 * 2**30, o.proc.peak_tree_bytes


@pytest.mark.parametrize("containment", CONTAINMENTS)
def test_a_result_written_before_a_crash_is_a_crash(
    llama: Path, tmpdir_mark: tuple[Path, str], containment: str
) -> None:
    _, mark = tmpdir_mark
    o = init(llama, mark, containment, generator="tests.sandbox_factories:forge_then_segfault")
    assert (
        o.classified.outcome == "crash"
        and "SIGSEGV" in o.classified.summary
        and "after writing a result" in o.classified.summary
    )
    assert o.result is None and o.peak_source != "the generator"


@pytest.mark.parametrize("containment", CONTAINMENTS)
def test_writes_into_the_weights_folder_are_caught(
    llama: Path, tmpdir_mark: tuple[Path, str], containment: str
) -> None:
    from tests.conftest import check_folder, only

    _, mark = tmpdir_mark
    before = (llama / "config.json").read_bytes()
    env = dict(os.environ)
    env[MARK] = mark
    os.chdir(REPO)
    r = check_folder(
        llama,
        MC,
        options=RunOptions(device="cpu", generator="tests.sandbox_factories:tamper", containment=containment),  # type: ignore[arg-type]
        env=env,
    )
    assert r.verdict == "not_ready"
    init = r.init or {}
    if init.get("containment", {}).get("read_only_mount"):
        # the folder was read-only to the init: the write failed, the folder is unchanged
        assert init["outcome"] == "error" and "Read-only file system" in (init.get("summary") or "")
        assert (llama / "config.json").read_bytes() == before and not (llama / "planted.bin").exists()
    else:
        [f] = only(r, "INIT003")
        assert "config.json" in f.message and "planted.bin" in f.message


@pytest.mark.parametrize("containment", CONTAINMENTS)
def test_killing_the_parent_from_inside(llama: Path, tmpdir_mark: tuple[Path, str], containment: str) -> None:
    _, mark = tmpdir_mark
    o = init(llama, mark, containment, generator="tests.sandbox_factories:kill_parent")
    if o.proc is not None and o.proc.containment.get("pid_namespace"):
        # its parent is the namespace's reaper, which a signal from inside cannot kill
        assert o.classified.outcome == "ok"
    else:
        assert o.classified.outcome == "error" and "supervisor ended" in o.classified.summary
    assert marked(mark) == []


@pytest.mark.parametrize("factory", ["result_list", "result_bad_stages", "result_nan"])
def test_results_of_the_wrong_shape(llama: Path, tmpdir_mark: tuple[Path, str], factory: str) -> None:
    _, mark = tmpdir_mark
    o = init(llama, mark, generator=f"tests.sandbox_factories:{factory}")
    assert o.classified.outcome == "error" and "without writing a valid result" in o.classified.summary
    assert o.result is None and o.result_problem
    json.dumps(o.to_dict())


def test_event_lines_of_the_wrong_shape(llama: Path, tmpdir_mark: tuple[Path, str]) -> None:
    _, mark = tmpdir_mark
    o = init(llama, mark, generator="tests.sandbox_factories:bad_events")
    assert o.classified.outcome == "ok"
    assert all(isinstance(e.get("stage"), str) for e in o.events)


def test_floods_stay_bounded(llama: Path, tmpdir_mark: tuple[Path, str]) -> None:
    _, mark = tmpdir_mark
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for factory in ("event_flood", "stdout_flood"):
        o = init(llama, mark, generator=f"tests.sandbox_factories:{factory}", timeout=300)
        assert o.classified.outcome == "ok", o.to_dict()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: never held the GiB


@pytest.mark.parametrize("factory", ["exit_137", "sigkill", "segfault"])
def test_ends_without_a_result_render_everywhere(llama: Path, tmp_path: Path, factory: str) -> None:
    out = tmp_path / "rep"
    p = _cli(llama, out, [f"--generator=tests.sandbox_factories:{factory}"], mark=uuid.uuid4().hex)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert "INIT (tests.sandbox_factories" in p.stdout
    _complete_set(out)
    for fmt in ("text", "html", "junit", "markdown", "github", "json"):
        r = subprocess.run(
            [PYTHON, "-m", "npu_preflight", "render", str(out / "report.json"), "--format", fmt],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and "Traceback" not in r.stderr, (fmt, r.stderr)


def test_timeout_keeps_the_signal_and_the_peak(
    llama: Path, tmpdir_mark: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, mark = tmpdir_mark
    monkeypatch.setenv("PREFLIGHT_TEST_STARTED", str(t / "started"))
    o = init(llama, mark, generator="tests.sandbox_factories:hang_after_start", timeout=6)
    d = o.to_dict()
    assert d["outcome"] == "timeout" and d["signal"] == "SIGKILL" and d["timed_out"]
    assert d["peak_bytes"] and d["stage"] == "generator"
    assert [s["duration_s"] for s in d["stages"]][-1] is None  # the stage that never finished


# -- the CLI as users run it: signals, a killed tool, concurrent runs ---------------------------


def _cli(
    folder: Path, out: Path, extra: list[str], mark: str, tmp: Path | None = None, wait: bool = True, **kw: Any
) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[MARK] = mark
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    env.update(kw.pop("env", {}))
    args = [
        PYTHON,
        "-m",
        "npu_preflight",
        "check",
        str(folder),
        "--device",
        "cpu",
        "--out",
        str(out),
        *[f"--set={k}={json.dumps(v)}" for k, v in MC.items()],
        *extra,
    ]
    if not wait:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def _complete_set(out: Path) -> dict[str, Any]:
    doc = json.loads((out / "report.json").read_text())
    validate_report(doc)
    run = doc["tool"]["run_id"]
    assert run and f'content="{run}"' in (out / "report.html").read_text()
    assert f'value="{run}"' in (out / "junit.xml").read_text()
    return doc


def _wait_for(path: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_mid_init(llama: Path, tmp_path: Path, sig: signal.Signals) -> None:
    mark, tmp, out = uuid.uuid4().hex, tmp_path / "tmp", tmp_path / "rep"
    tmp.mkdir()
    started = tmp_path / "started"
    p = _cli(
        llama,
        out,
        ["--generator=tests.sandbox_factories:hang_after_start"],
        mark,
        tmp,
        wait=False,
        env={"PREFLIGHT_TEST_STARTED": str(started)},
    )
    _wait_for(started)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stdout[-2000:] + stderr[-2000:]
    doc = _complete_set(out)
    assert doc["verdict"] == "error" and doc["summary"]["interrupted"] is True
    assert doc["init"]["outcome"] == "interrupted"
    assert marked(mark) == []
    assert [x.name for x in tmp.iterdir() if x.name.startswith("preflight-")] == []


def test_a_killed_tool_leaves_nothing_behind(llama: Path, tmp_path: Path) -> None:
    mark, tmp, out = uuid.uuid4().hex, tmp_path / "tmp", tmp_path / "rep"
    tmp.mkdir()
    started = tmp_path / "started"
    p = _cli(
        llama,
        out,
        ["--generator=tests.sandbox_factories:hang_after_start"],
        mark,
        tmp,
        wait=False,
        env={"PREFLIGHT_TEST_STARTED": str(started)},
    )
    _wait_for(started)
    p.kill()
    p.communicate(timeout=60)
    end = time.monotonic() + 30
    while (marked(mark) or [x for x in tmp.iterdir() if x.name.startswith("preflight-")]) and time.monotonic() < end:
        time.sleep(0.2)
    assert marked(mark) == []
    assert [x.name for x in tmp.iterdir() if x.name.startswith("preflight-")] == []


def test_two_runs_with_the_same_out_never_mix(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    procs = [
        _cli(llama, out, ["--generator=tests.sandbox_factories:fine"], uuid.uuid4().hex, wait=False) for _ in range(3)
    ]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    _complete_set(out)
