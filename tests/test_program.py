"""The program's end (``cli.run`` / ``cli.end_process``): the process ends without the interpreter's
teardown, yet everything a normal exit shows outside the process still happens — the exit status,
atexit handlers, buffered output, running threads, a failed flush."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, cli_env, validate_report

END_PROCESS = "from npu_preflight.cli import end_process\n"


def _script(
    body: str, *, stdout: int | None = subprocess.PIPE, preamble: str = END_PROCESS
) -> subprocess.CompletedProcess[str]:
    code = "import atexit, sys, threading, time\n" + preamble + textwrap.dedent(body)
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)  # stdout really buffered, as for most users
    return subprocess.run(
        [PYTHON, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, timeout=60
    )


#: An object whose ``__del__`` prints: the interpreter's teardown would free it and print.
TORN_DOWN = 'class Noisy:\n    def __del__(self):\n        print("torn down", flush=True)\nkeep = Noisy()\n'


def test_atexit_runs_buffered_output_arrives_teardown_skipped() -> None:
    p = _script(
        """
        atexit.register(lambda: print("atexit ran"))
        sys.stdout.write("no newline, still buffered")  # a pipe: block-buffered until the flush
        end_process(4)
        """,
        preamble=END_PROCESS + TORN_DOWN,
    )
    assert p.returncode == 4, p.stderr
    assert p.stdout == "no newline, still bufferedatexit ran\n"
    assert "torn down" not in p.stdout + p.stderr  # the teardown, which would free ``keep``, was skipped


def test_run_ends_through_end_process() -> None:
    p = _script(
        """
        from npu_preflight.cli import run
        sys.argv = ["npu-preflight", "--version"]
        run()
        """,
        preamble=TORN_DOWN,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("npu-preflight, version ") and "torn down" not in p.stdout


def test_the_cli_imports_with_the_collector_off_and_runs_with_it_on() -> None:
    """``__main__.main``: nothing the imports made is walked again (frozen), and the run itself
    collects as usual — a long check-many or deep scan must not grow without bound."""
    p = _script(
        """
        import gc
        from npu_preflight.__main__ import main
        during_imports = []
        def seen(phase, info):
            cli = sys.modules.get("npu_preflight.cli")
            if phase == "start" and not hasattr(cli, "run"):  # not imported yet, or half-way
                during_imports.append(info["generation"])
        gc.callbacks.append(seen)
        def report():
            print(gc.isenabled(), gc.get_freeze_count() > 10_000, gc.get_threshold()[0], during_imports)
        atexit.register(report)
        sys.argv = ["npu-preflight", "--version"]
        main()
        """,
        preamble="",  # the CLI not imported yet
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "True True 10000 []"


def test_a_profiler_gets_its_report() -> None:
    """``python -m cProfile -m npu_preflight``: the profile is printed once the program returns."""
    env = cli_env()
    p = subprocess.run(
        [PYTHON, "-m", "cProfile", "-m", "npu_preflight", "--version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("npu-preflight, version ") and "function calls" in p.stdout


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [("None", 0, ""), ("0", 0, ""), ("7", 7, ""), ("255", 255, ""), ("'bad input'", 1, "bad input\n"), ("True", 1, "")],
)
def test_status_as_sys_exit_gives_it(code: str, status: int, stderr: str) -> None:
    for how in (f"end_process({code})", f"sys.exit({code})"):
        p = _script(how)
        assert (p.returncode, p.stderr) == (status, stderr), how


def test_a_running_thread_is_waited_for(tmp_path: Path) -> None:
    done = tmp_path / "done"
    p = _script(
        f"""
        def late():
            time.sleep(0.5)
            open({str(done)!r}, "w").write("finished")
        threading.Thread(target=late).start()
        end_process(5)
        """
    )
    assert p.returncode == 5, p.stderr
    assert done.read_text() == "finished"


def test_a_failed_flush_is_status_120_as_in_cpython() -> None:
    """stdout a pipe nobody reads any more: the buffered text fails at the final flush."""
    for how in ("end_process(0)", "sys.exit(0)"):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            p = _script(f"sys.stdout.write('x' * 10)\n{how}\n", stdout=write_end)
        finally:
            os.close(write_end)
        assert p.returncode == 120, (how, p.stderr)


def test_the_installed_program_ends_through_run(llama: Path, tmp_path: Path) -> None:
    """The console script and ``python -m`` both end through ``run``: the reports are whole, the
    terminal text complete, the status the verdict's."""
    script = Path(PYTHON).parent / "npu-preflight"
    assert "from npu_preflight.__main__ import main" in script.read_text()
    for i, argv in enumerate(([str(script)], [PYTHON, "-m", "npu_preflight"])):
        out = tmp_path / f"rep{i}"
        p = subprocess.run(
            [*argv, "check", str(llama), "--static", "--out", str(out)],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=REPO,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("READY") and " · checks: " in p.stdout
        validate_report(json.loads((out / "report.json").read_text()))
        assert (out / "report.html").read_text().rstrip().endswith("</html>")


def test_the_install_adds_no_import_hook_to_start_up() -> None:
    """``make`` installs the package in strict editable mode: a path on ``sys.path``, not the import
    hook of the default mode, which every interpreter start in the venv would import (README,
    Developing). A plain ``pip install -e .`` fails this; ``make setup-run`` installs it right."""
    p = subprocess.run([PYTHON, "-X", "importtime", "-c", "import npu_preflight"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if "|" in line]
    assert "npu_preflight" in imported
    assert not [m for m in imported if "editable" in m], imported


@pytest.mark.parametrize("closed", [1, 2])
def test_a_closed_stdout_or_stderr_still_runs_and_writes_the_reports(llama: Path, tmp_path: Path, closed: int) -> None:
    """Started with descriptor 1 or 2 closed (Python then makes ``sys.stdout``/``sys.stderr`` None):
    the check runs, writes its reports and exits with the verdict's status, not an internal error."""
    out = tmp_path / "rep"
    other = subprocess.PIPE
    p = subprocess.run(
        [PYTHON, "-m", "npu_preflight", "check", str(llama), "--static", "--out", str(out)],
        stdout=subprocess.DEVNULL if closed == 1 else other,
        stderr=subprocess.DEVNULL if closed == 2 else other,
        preexec_fn=lambda: os.close(closed),
        env=cli_env(),
        cwd=REPO,
        timeout=120,
    )
    assert p.returncode == 0, (p.stdout, p.stderr)
    validate_report(json.loads((out / "report.json").read_text()))


def test_the_install_is_relinked_when_a_package_folder_changes() -> None:
    """Strict editable mode links each file, so a module added or removed needs the install step
    again; ``make`` reruns it because every package folder is a prerequisite of its stamp (README,
    Developing). ``make -pn`` prints the rule without running anything."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make")
    p = subprocess.run(["make", "-pn", ".venv/.run-installed"], capture_output=True, text=True, cwd=REPO)
    [rule] = [line for line in p.stdout.splitlines() if line.startswith(".venv/.run-installed: ") and ":=" not in line]
    prerequisites = set(rule.split(":", 1)[1].split())
    folders = {
        str(d.relative_to(REPO))
        for top in ("toolkit", "checks", "reports", "schemas")
        for d in [REPO / top, *(REPO / top).rglob("*")]
        if d.is_dir() and d.name != "__pycache__"
    }
    assert folders and folders <= prerequisites, folders - prerequisites
