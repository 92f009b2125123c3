"""The engine's contracts: facts fail as values, errored means not trusted, a report is always
written, and the tool runs whatever else is installed under generic top-level names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from npu_preflight.cli import main
from npu_preflight.context import Context, RunOptions
from npu_preflight.errors import FactError
from tests.conftest import MINDIE_MC, PYTHON, REPO, check_folder, cli_env, validate_report

EVERY_FORMAT = ("text", "json", "markdown", "github")


def _boom(*_a: object, **_k: object) -> None:
    raise RuntimeError("injected failure while reading tokenizer.json")


def test_a_failed_fact_is_cached_and_raised_to_every_user(llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import npu_preflight.formats.tokenizer as tok

    calls = []

    def counting(*a: object) -> None:
        calls.append(a)
        _boom()

    monkeypatch.setattr(tok, "read_tokenizer_json", counting)
    ctx = Context(llama, options=RunOptions(static=True))
    for _ in range(3):
        with pytest.raises(FactError) as info:
            _ = ctx.tokenizer  # a fact built on the failed one carries the original failure
        assert info.value.fact == "tokenizer_load" and "injected failure" in info.value.trace
    assert len(calls) == 1
    state, trace = ctx.state("tokenizer_load")
    assert state == "failed" and "RuntimeError" in trace


def test_a_fact_that_raises_gives_errored_checks_verdict_error_and_exit_3(
    llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import npu_preflight.formats.tokenizer as tok

    monkeypatch.setattr(tok, "read_tokenizer_json", _boom)
    out = tmp_path / "rep"
    for fmt in EVERY_FORMAT:
        res = CliRunner().invoke(main, ["check", str(llama), "--static", "--out", str(out), "--format", fmt])
        assert res.exit_code == 3, res.output
        assert "injected failure" in res.output or "TOK00" in res.output
    doc = json.loads((out / "report.json").read_text())
    validate_report(doc)
    assert doc["verdict"] == "error"
    errored = [c for c in doc["checks"] if c["status"] == "errored"]
    assert {c["id"] for c in errored} >= {"TOK002", "TOK003"}
    assert all("injected failure" in c["reason"] for c in errored)
    # errored checks come first in the JSON, and are named up front in every human format
    assert [c["status"] for c in doc["checks"][: len(errored)]] == ["errored"] * len(errored)
    assert doc["summary"]["checks"]["errored"] == len(errored)
    page = (out / "report.html").read_text()
    assert "Not vouched for" in page and page.index("Not vouched for") < page.index('id="findings-section"')
    assert '<error message="internal error in the check"' in (out / "junit.xml").read_text()
    text = CliRunner().invoke(main, ["render", str(out / "report.json")]).output
    assert text.startswith("ERROR") and text.index("ERRORED CHECKS") < text.index("checks:")
    md = CliRunner().invoke(main, ["render", str(out / "report.json"), "--format", "markdown"]).output
    assert "Not vouched for" in md and "`TOK002`" in md
    gh = CliRunner().invoke(main, ["render", str(out / "report.json"), "--format", "github"]).output
    assert gh.splitlines()[0].startswith("::error title=TOK") or "errored" in gh.splitlines()[0]


def test_an_errored_check_is_never_ready(llama: Path) -> None:
    """A check that raises on a clean folder: before schema 2 this said READY."""
    from dataclasses import replace

    def broken(ctx: object) -> None:
        raise KeyError("bug")

    from npu_preflight.policy import Policy, exit_code
    from npu_preflight.runner import run
    from tests.conftest import registry

    specs = [replace(s, func=broken) if s.id == "CFG001" else s for s in registry().specs]
    report = run(Context(llama, options=RunOptions(static=True)), specs, Policy())
    assert report.verdict == "error" and not report.ready and exit_code(report) == 3
    assert report.checks[0].id == "CFG001" and "KeyError" in (report.checks[0].reason or "")


@pytest.mark.parametrize(
    ("case", "expected_exit", "expected_id"),
    [
        ("set-superscript", 1, "MC001"),
        ("set-double-minus", 1, "MC001"),
        ("index-1e400", 1, "WT010"),
        ("added-tokens-int", 1, "TOK002"),
        ("probe-writes-list", 1, "ENV010"),
    ],
)
def test_inputs_that_once_crashed_end_with_a_report(
    llama: Path, tmp_path: Path, case: str, expected_exit: int, expected_id: str
) -> None:
    args = ["check", str(llama), "--no-init", "--out", str(tmp_path / "rep"), "--format", "json"]
    mc = dict(MINDIE_MC)
    if case == "set-superscript":
        args += ["--set", "world_size=²"]
    elif case == "set-double-minus":
        args += ["--set", 'world_size="--4"']
    elif case == "index-1e400":
        (llama / "model.safetensors.index.json").write_text(
            '{"metadata": {"total_size": 1e400}, "weight_map": {"lm_head.weight": "model.safetensors"}}'
        )
    elif case == "added-tokens-int":
        doc = json.loads((llama / "tokenizer.json").read_text())
        doc["added_tokens"] = 5
        (llama / "tokenizer.json").write_text(json.dumps(doc))
    elif case == "probe-writes-list":
        fake = tmp_path / "python"
        fake.write_text('#!/bin/sh\nprintf "[]" > "$2"\n')
        fake.chmod(0o755)
        args += ["--python", str(fake)]
    if "set-" not in case:
        args += [f"--set={k}={json.dumps(v)}" for k, v in mc.items()]
    else:
        args += [f"--set={k}={json.dumps(v)}" for k, v in mc.items() if k != "world_size"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([PYTHON, "-m", "npu_preflight", *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == expected_exit, proc.stdout[-3000:] + proc.stderr
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    validate_report(doc)
    assert doc["summary"]["checks"]["errored"] == 0
    assert expected_id in {f["check_id"] for f in doc["findings"]}, [f["check_id"] for f in doc["findings"]]


def test_unknown_select_and_ignore_ids_are_usage_errors(llama: Path) -> None:
    res = CliRunner().invoke(main, ["check", str(llama), "--static", "--no-out", "--select", "FOO"])
    assert res.exit_code == 2 and "--select 'FOO' names no check" in res.output
    res = CliRunner().invoke(main, ["check", str(llama), "--static", "--no-out", "--ignore", "WT0001"])
    assert res.exit_code == 2 and "did you mean" in res.output and "WT001" in res.output
    res = CliRunner().invoke(main, ["check", str(llama), "--static", "--no-out", "--select", "wt,cfg002"])
    assert res.exit_code == 0, res.output


def _fake_distribution(site: Path, name: str) -> None:
    pkg = site / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"raise ImportError('this is the registry project {name!r}, not ours')\n")
    dist = site / f"{name}-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9\n")
    (dist / "RECORD").write_text("")
    (dist / "top_level.txt").write_text(f"{name}\n")


@pytest.mark.slow
def test_runs_every_check_beside_foreign_top_level_packages(llama: Path, tmp_path: Path) -> None:
    """A venv where other distributions own the generic names ``toolkit``, ``checks``, ``reports``
    and ``schemas``, started from a folder that has its own ``checks/``: every check still runs."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for name in ("toolkit", "checks", "reports", "schemas"):
        _fake_distribution(site, name)
    # the foreign packages sit first; ours (and click, jinja2, ...) come from the development venv
    ours = sysconfig.get_paths()["purelib"]
    (site / "zz_npu_preflight_dev.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    work = tmp_path / "project"
    (work / "checks").mkdir(parents=True)
    (work / "checks" / "__init__.py").write_text("raise ImportError('the project checks/ folder')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import checks"], capture_output=True, text=True, cwd=work, env=env
    )
    assert "ImportError" in probe.stderr  # the foreign names really shadow
    out = tmp_path / "rep"
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "npu_preflight", "check", str(llama), "--static", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "report.json").read_text())
    validate_report(doc)
    from tests.conftest import registry

    assert len(doc["checks"]) == len(registry().specs)
    assert doc["summary"]["checks"]["errored"] == 0 and doc["verdict"] == "ready"


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """Built from the same pyproject, the wheel holds npu_preflight/ and its dist-info, nothing else."""
    import zipfile

    proc = subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = list(tmp_path.glob("npu_preflight-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"npu_preflight", wheel.name.split("-py")[0].replace("-", "_") + ".dist-info"} or (
        len(tops) == 2
        and "npu_preflight" in tops
        and all(t == "npu_preflight" or t.endswith(".dist-info") for t in tops)
    )
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "npu_preflight/cli.py",
        "npu_preflight/checks/weights.py",
        "npu_preflight/reports/templates/report.html.j2",
        "npu_preflight/schemas/report.schema.json",
        "npu_preflight/sandbox/child.py",
        "npu_preflight/probe/probe_script.py",
    ):
        assert needed in names, needed


def test_static_folder_check_needs_no_model_config(llama: Path) -> None:
    r = check_folder(llama)
    assert r.verdict == "ready" and r.trusted


def test_numpy_is_optional(llama: Path, tmp_path: Path) -> None:
    """pip install npu-preflight (no extras) has no numpy: every static check runs; --deep says
    which extra it needs (exit 2); manifest hashes without it."""
    code = "import sys; sys.modules['numpy'] = None\nfrom npu_preflight.cli import main\nmain(sys.argv[1:])\n"
    run = lambda *a: subprocess.run(  # noqa: E731
        [PYTHON, "-c", code, *a], capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=300
    )
    ok = run("check", str(llama), "--static", "--no-out", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["summary"]["checks"]["errored"] == 0
    deep = run("check", str(llama), "--static", "--deep", "--no-out")
    assert deep.returncode == 2 and "npu-preflight[deep]" in deep.stderr
    man = run("manifest", str(llama), "-o", str(tmp_path / "m.json"))
    assert man.returncode == 0, man.stderr
