"""The probe and a one-process init share one process, so torch is imported once per run
(``sandbox.WarmInit``): used only where it gives what two processes would, contained like the init,
and never left behind.

Real CLI runs as users start them; ``--python`` wrappers stand in for a slow or lying interpreter,
and a ``sitecustomize`` on PYTHONPATH logs every process that imports torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from npu_preflight.context import Context, RunOptions
from tests.conftest import check_folder, only
from tests.toolkit.test_containment import MARK, MC, _cli, _complete_set, _wait_for, marked

pytestmark = pytest.mark.slow

SPY = """
import os, sys, uuid
_log = os.environ.get("PREFLIGHT_TEST_IMPORT_LOG")
if _log:
    _me = uuid.uuid4().hex

    class _Spy:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                with open(_log, "a") as fh:
                    fh.write(_me + "\\n")
            return None

    sys.meta_path.insert(0, _Spy())
"""


def _importers(log: Path) -> int:
    """How many processes imported torch."""
    return len(set(log.read_text().split())) if log.exists() else 0


def _spy_env(tmp_path: Path) -> dict[str, str]:
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(SPY)
    return {"PYTHONPATH": str(spy), "PREFLIGHT_TEST_IMPORT_LOG": str(tmp_path / "imports.log")}


def _wrapper(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "python-wrapper"
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return p


def _no_leftovers(mark: str, tmp: Path) -> None:
    end = time.monotonic() + 30
    while (marked(mark) or [x for x in tmp.iterdir() if x.name.startswith("preflight-")]) and time.monotonic() < end:
        time.sleep(0.2)
    assert marked(mark) == []
    assert [x.name for x in tmp.iterdir() if x.name.startswith("preflight-")] == []


def _run(llama: Path, tmp_path: Path, extra: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    mark, tmp, out = uuid.uuid4().hex, tmp_path / "tmp", tmp_path / "rep"
    tmp.mkdir()
    p = _cli(llama, out, extra, mark, tmp, env=env)
    _no_leftovers(mark, tmp)
    return p, _complete_set(out)


def test_torch_is_imported_once_per_run(llama: Path, tmp_path: Path) -> None:
    env = _spy_env(tmp_path)
    p, doc = _run(llama, tmp_path, [], **env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert _importers(tmp_path / "imports.log") == 1
    assert doc["environment"]["probe"]["in_init_process"] is True
    assert doc["init"]["outcome"] == "ok" and doc["init"]["probe_in_process"] is True
    assert doc["environment"]["host"]["pid"] == doc["init"]["pid"]
    # the init's own stages count from its request, not from the probe before it
    assert [s["stage"] for s in doc["init"]["stages"]][:3] == ["import", "tokenizer", "weights"]


def test_without_an_init_the_probe_runs_alone(llama: Path, tmp_path: Path) -> None:
    env = _spy_env(tmp_path)
    p, doc = _run(llama, tmp_path, ["--no-init"], **env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert _importers(tmp_path / "imports.log") == 1
    assert doc["environment"]["probe"]["in_init_process"] is False and doc["init"] is None


def test_a_probe_broken_by_the_memory_cap_runs_again_without_it(llama: Path, tmp_path: Path) -> None:
    # torch cannot even be imported under a 200 MiB address-space cap: that is the init's cap, not
    # the environment's fault, so the separate probe runs (uncapped) and is the one reported
    env = _spy_env(tmp_path)
    _p, doc = _run(llama, tmp_path, ["--memory-limit", "200MiB"], **env)
    assert _importers(tmp_path / "imports.log") == 2
    probe = doc["environment"]["probe"]
    assert probe["in_init_process"] is False and probe["failure"] is None
    assert doc["environment"]["errors"] == {}
    assert doc["environment"]["packages"]["torch"].startswith("2.")
    assert not [c for c in doc["checks"] if c["id"] == "ENV010" and c["status"] == "failed"]


def test_the_init_time_limit_counts_from_its_request(llama: Path, tmp_path: Path) -> None:
    # the interpreter takes 3 s to start: with a 2 s limit counted from the process start, the
    # init would time out; counted from its request it has all of its 2 s
    slow = _wrapper(tmp_path, f'sleep 3\nexec {sys.executable} "$@"')
    _p, doc = _run(llama, tmp_path, [f"--python={slow}", "--timeout=2", "--generator=tests.sandbox_factories:fine"])
    assert doc["init"]["probe_in_process"] is True
    assert doc["init"]["outcome"] == "ok", doc["init"]
    assert doc["environment"]["probe"]["duration_s"] >= 3


@pytest.mark.parametrize(
    "factory",
    [
        "hang_after_start",  # the restarted clock still ends a hanging init
        "says_ready_then_hangs",  # a readiness claim mid-init buys nothing
    ],
)
def test_the_init_keeps_its_time_limit(llama: Path, tmp_path: Path, factory: str) -> None:
    _p, doc = _run(
        llama,
        tmp_path,
        ["--timeout=4", f"--generator=tests.sandbox_factories:{factory}"],
        PREFLIGHT_TEST_STARTED=str(tmp_path / "started"),
    )
    assert (tmp_path / "started").exists()
    init = doc["init"]
    assert init["probe_in_process"] is True
    assert init["outcome"] == "timeout" and init["signal"] == "SIGKILL" and init["timed_out"], init
    assert init["duration_s"] < 30


def test_an_interpreter_that_lies_about_being_ready(llama: Path, tmp_path: Path) -> None:
    # says "ready" at once (and writes no probe result), then hangs: nothing of it is believed, the
    # separate probe and init run — and each keeps its own time limit although it says the same
    liar = _wrapper(tmp_path, 'echo \'{"stage": "_ready"}\' >&3\nexec sleep 300')
    mark = uuid.uuid4().hex
    r = check_folder(
        llama,
        MC,
        options=RunOptions(device="cpu", python=str(liar), probe_timeout=3, timeout=3),
        env={**os.environ, MARK: mark},
    )
    assert "timed out" in only(r, "ENV010")[0].message
    assert r.environment is not None and r.environment["probe"]["in_init_process"] is False
    # the probe's error blocks the init there; on its own, the init keeps its limit too
    ctx = Context(
        llama,
        MC,
        options=RunOptions(device="cpu", python=str(liar), probe_timeout=3, timeout=3),
        env={**os.environ, MARK: mark},
    )
    init = ctx.init_outcome
    assert init.classified.outcome == "timeout" and not init.probe_shared
    assert marked(mark) == []


def test_a_blocked_init_leaves_no_waiting_process(llama: Path, tmp_path: Path) -> None:
    # rank 5 of world_size 1 is an error found before the init: the process that probed and then
    # waited for its request is stopped and reaped
    p, doc = _run(llama, tmp_path, ["--set=rank=5"])
    assert p.returncode == 1
    assert doc["environment"]["probe"]["in_init_process"] is True
    assert doc["init"] is None
    assert "blocked by errors found earlier" in p.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_the_init_process_probes(llama: Path, tmp_path: Path, sig: signal.Signals) -> None:
    started = tmp_path / "started"
    stuck = _wrapper(tmp_path, f"touch {started}\nexec sleep 300")
    mark, tmp, out = uuid.uuid4().hex, tmp_path / "tmp", tmp_path / "rep"
    tmp.mkdir()
    p = _cli(llama, out, [f"--python={stuck}"], mark, tmp, wait=False)
    _wait_for(started)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stdout[-2000:] + stderr[-2000:]
    doc = _complete_set(out)
    assert doc["summary"]["interrupted"] is True
    _no_leftovers(mark, tmp)


def test_multi_rank_runs_keep_the_separate_probe(llama: Path) -> None:
    ctx = Context(llama, {**MC, "world_size": 2}, options=RunOptions(device="cpu"), env=dict(os.environ))
    try:
        ctx.prefetch({"init_outcome"})
        assert ctx._warm is None
    finally:
        ctx.close()
    ctx = Context(llama, {**MC, "world_size": 2}, options=RunOptions(device="cpu", ranks="0"), env=dict(os.environ))
    try:
        ctx.prefetch({"init_outcome"})
        assert ctx._warm is not None
    finally:
        ctx.close()
    assert ctx._warm is None


def test_the_probes_output_is_not_the_inits(llama: Path, tmp_path: Path) -> None:
    # what the interpreter printed while it probed (here a recorded CUDA OOM line) must not
    # classify the init's own crash, nor appear as the init's stderr
    line = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"
    noisy = _wrapper(tmp_path, f'echo "{line}" >&2\necho probe-stdout\nexec {sys.executable} "$@"')
    _p, doc = _run(llama, tmp_path, [f"--python={noisy}", "--generator=tests.sandbox_factories:segfault"])
    init = doc["init"]
    assert init["probe_in_process"] is True
    assert init["outcome"] == "crash" and "SIGSEGV" in init["summary"], init
    assert "CUDA out of memory" not in init["stderr_tail"] and "probe ended here" not in init["stderr_tail"]


def test_an_interpreter_that_cannot_start(llama: Path, tmp_path: Path) -> None:
    # the shared process never starts: the separate probe runs and names the cause, as without it
    mark = uuid.uuid4().hex
    r = check_folder(
        llama, MC, options=RunOptions(device="cpu", python=str(tmp_path / "no-python")), env={**os.environ, MARK: mark}
    )
    assert "cannot start" in only(r, "ENV010")[0].message
    assert r.environment is not None and r.environment["probe"]["in_init_process"] is False
    assert marked(mark) == []


def test_a_process_that_ends_while_it_waits(llama: Path, tmp_path: Path) -> None:
    # the interpreter probes for real, says it is ready, then exits 0 instead of waiting: its probe
    # is good, and since it never took the request the init runs afresh in its own process
    py = sys.executable
    quits = _wrapper(
        tmp_path,
        f'if [ "$2" = "--probe-first" ]; then\n  {py} "$3" "$4" "$5"\n'
        f'  echo \'{{"stage": "_ready"}}\' >&3\n  exit 0\nfi\nexec {py} "$@"',
    )
    _p, doc = _run(llama, tmp_path, [f"--python={quits}", "--generator=tests.sandbox_factories:fine"])
    assert doc["environment"]["probe"]["in_init_process"] is True
    assert doc["init"]["outcome"] == "ok" and doc["init"]["probe_in_process"] is False, doc["init"]


def test_the_probe_duration_is_the_probes_own(llama: Path) -> None:
    # the tool asks for the probe long after the process finished it: the reported duration is how
    # long the probe took (the supervisor's clock), not how long the tool took to ask
    ctx = Context(llama, MC, options=RunOptions(device="cpu"), env=dict(os.environ))
    try:
        ctx.prefetch({"init_outcome"})
        time.sleep(12)
        probe = ctx.probe
    finally:
        ctx.close()
    assert probe.in_init
    assert 0 < probe.to_dict()["probe"]["duration_s"] < 10
