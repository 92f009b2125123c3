"""CI-native: policy files, SARIF, GitHub annotations and summary, JUnit following --fail-on,
check-config, many folders, the cache, colour and progress, common mistakes, the Action and the
pre-commit hook — each as a user meets it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from npu_preflight.cli import main
from tests.conftest import MINDIE_MC, PYTHON, REPO, cli_env

SARIF_SCHEMA = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, **kw: Any) -> Any:
    return subprocess.run(
        [PYTHON, "-m", "npu_preflight", *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        cwd=cwd or REPO,
        timeout=kw.get("timeout", 300),
    )


def _mc_file(tmp: Path, **over: Any) -> Path:
    p = tmp / "model_config.json"
    p.write_text(json.dumps({**MINDIE_MC, **over}, indent=2) + "\n")
    return p


def _no_dtype(folder: Path) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("torch_dtype", None)
    cfg.pop("dtype", None)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return folder


# -- the policy file ----------------------------------------------------------------------------


def test_policy_file_is_found_applied_and_overridden(llama: Path, tmp_path: Path) -> None:
    proj = tmp_path / "repo"
    (proj / "sub").mkdir(parents=True)
    models = proj / "models"
    shutil.copytree(llama, models / "legacy-1")
    (proj / "pyproject.toml").write_text(
        '[project]\nname=\'x\'\n\n[tool.npu-preflight]\nfail-on = "warning"\nignore = ["SEC006"]\n'
        'target-device = "910B3"\n\n[[tool.npu-preflight.folder]]\npath = "models/legacy-*"\n'
        'ignore = ["MC"]\nreason = "migrating in Q3"\n'
    )
    r = _cli("check", str(models / "legacy-1"), "--static", "--no-out", "--format", "json", cwd=proj / "sub")
    doc = json.loads(r.stdout)
    assert doc["fail_on"] == "warning" and doc["target"]["options"]["policy_file"].endswith("pyproject.toml")
    assert doc["memory"]["device"]["name"] == "910B3"
    mc001 = next(c for c in doc["checks"] if c["id"] == "MC001")
    assert mc001["status"] == "skipped" and "migrating in Q3" in mc001["reason"]
    # a flag given on the command line wins
    r = _cli(
        "check", str(models / "legacy-1"), "--static", "--no-out", "--format", "json", "--fail-on", "error", cwd=proj
    )
    assert json.loads(r.stdout)["fail_on"] == "error"
    r = _cli("check", str(models / "legacy-1"), "--static", "--no-out", "--no-config", "--format", "json", cwd=proj)
    assert json.loads(r.stdout)["target"]["options"]["policy_file"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('fail_on = "warning"\n', "did you mean 'fail-on'"),
        ('fail-on = "sometimes"\n', 'fail-on must be "error" or "warning"'),
        ('[[folder]]\npath = "x"\nignore = ["WT"]\n', "needs a reason"),
        ('timeout = "soon"\n', "timeout must be seconds"),
        ("= broken", "not valid TOML"),
    ],
)
def test_bad_policy_files_name_the_key(llama: Path, tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / ".npu-preflight.toml").write_text(body)
    r = _cli("check", str(llama), "--static", "--no-out", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and ".npu-preflight.toml" in r.stderr


# -- SARIF, annotations, step summary, JUnit ------------------------------------------------------


def test_sarif_is_valid_and_points_at_the_line(llama: Path, tmp_path: Path) -> None:
    import jsonschema

    ws = tmp_path / "ws"
    shutil.copytree(llama, ws / "models" / "m")
    _no_dtype(ws / "models" / "m")
    mc = _mc_file(ws, rank=5)
    out = tmp_path / "out"
    r = _cli(
        "check", "models/m", "-c", str(mc), "--static", "--out", str(out), env=cli_env(GITHUB_WORKSPACE=str(ws)), cwd=ws
    )
    assert r.returncode == 1, r.stderr
    sarif = json.loads((out / "sarif.json").read_text())
    jsonschema.Draft7Validator(json.loads(SARIF_SCHEMA.read_text())).validate(sarif)
    run = sarif["runs"][0]
    rules = {x["id"]: x for x in run["tool"]["driver"]["rules"]}
    assert "Bad:" in rules["CFG002"]["help"]["text"] and "``" not in rules["CFG002"]["help"]["text"]
    by_rule = {x["ruleId"]: x for x in run["results"]}
    loc = by_rule["MC003"]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "model_config.json", "uriBaseId": "SRCROOT"}
    text = mc.read_text().splitlines()
    assert '"rank"' in text[loc["region"]["startLine"] - 1]
    cfg = by_rule["CFG002"]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert cfg["uri"] == "models/m/config.json"


def test_github_annotations_and_step_summary(llama: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(llama, ws / "m")
    mc = _mc_file(ws, rank=5)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    r = _cli(
        "check",
        "m",
        "-c",
        str(mc),
        "--static",
        "--no-out",
        "--format",
        "github",
        env=cli_env(GITHUB_WORKSPACE=str(ws), GITHUB_STEP_SUMMARY=str(summary)),
        cwd=ws,
    )
    line = next(x for x in r.stdout.splitlines() if "title=MC003" in x)
    m = re.match(r"::error file=model_config\.json,line=(\d+),title=MC003::", line)
    assert m and '"rank"' in mc.read_text().splitlines()[int(m.group(1)) - 1]
    s = summary.read_text()
    assert s.startswith("earlier step\n") and "npu-preflight: NOT READY" in s and "### Coverage" in s


def test_junit_follows_fail_on(llama: Path, tmp_path: Path) -> None:
    from lxml import etree

    cfg = json.loads((llama / "config.json").read_text())
    cfg["architectures"] = None  # CFG006 warning only
    (llama / "config.json").write_text(json.dumps(cfg))
    for fail_on, failures in (("error", 0), ("warning", 1)):
        out = tmp_path / fail_on
        _cli("check", str(llama), "--static", "--fail-on", fail_on, "--out", str(out))
        suite = etree.parse(str(out / "junit.xml")).getroot().find("testsuite")
        assert suite is not None
        failed = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
        assert len([f for f in failed if f.startswith("CFG006")]) == failures, failed


# -- check-config ---------------------------------------------------------------------------------


def test_check_config_validates_without_weights(tmp_path: Path) -> None:
    good = _mc_file(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend_type: atb\nworld_size: 2\nrank: 2\nwrld_size: 4\n")
    dup = tmp_path / "dup.yaml"
    dup.write_text("world_size: 2\nworld_size: 4\n")
    r = CliRunner().invoke(main, ["check-config", str(good)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["check-config", str(bad), "--format", "json"])
    doc = json.loads(r.output)
    assert r.exit_code == 1 and {f["check_id"] for f in doc[0]["findings"]} >= {"MC002", "MC003", "MC008"}
    r = CliRunner().invoke(main, ["check-config", str(good), str(dup)])
    assert r.exit_code == 2 and "gives key 'world_size' twice (line 2)" in r.output


def test_models_config_json_given_as_model_config(llama: Path) -> None:
    r = CliRunner().invoke(main, ["check", str(llama), "--static", "-c", str(llama / "config.json"), "--no-out"])
    assert r.exit_code == 2 and "the model's own config.json" in r.output


# -- many folders, scan, cache --------------------------------------------------------------------


def test_many_folders_and_scan(llama: Path, tmp_path: Path) -> None:
    root = tmp_path / "hub"
    a = root / "models--org--a" / "snapshots" / "abc123"
    b = root / "plain" / "b"
    shutil.copytree(llama, a)
    shutil.copytree(llama, b)
    _no_dtype(b)
    (root / "models--org--a" / "blobs").mkdir()
    out = tmp_path / "scan"
    r = _cli("scan", str(root), "--out", str(out), "--", "--static")
    assert r.returncode == 1, r.stderr
    assert "1 of 2 folder(s) ready" in r.stdout
    index = json.loads((out / "index.json").read_text())
    assert sorted(Path(x["folder"]).name for x in index) == ["abc123", "b"]
    assert (out / "index.html").read_text().count("report.html") == 2
    for x in index:
        assert (Path(x["out"]) / "report.json").is_file()
    out2 = tmp_path / "two"
    r = _cli("check", str(a), str(b), "--static", "--out", str(out2))
    assert r.returncode == 1 and (out2 / "index.html").is_file()


def test_cache_answers_an_unchanged_folder(llama: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _cli("check", str(llama), "--static", "--no-out", "--cache-dir", str(cache))
    assert "answered from the cache" not in first.stdout
    second = _cli("check", str(llama), "--static", "--no-out", "--cache-dir", str(cache))
    assert "answered from the cache" in second.stdout and second.returncode == first.returncode
    forced = _cli("check", str(llama), "--static", "--no-out", "--cache-dir", str(cache), "--no-cache")
    assert "answered from the cache" not in forced.stdout
    _no_dtype(llama)  # the folder changed: a miss, and the new answer
    third = _cli("check", str(llama), "--static", "--no-out", "--cache-dir", str(cache))
    assert "answered from the cache" not in third.stdout and third.returncode == 1
    other_mc = _cli("check", str(llama), "--static", "--no-out", "--cache-dir", str(cache), "--set", "world_size=2")
    assert "answered from the cache" not in other_mc.stdout


# -- output ---------------------------------------------------------------------------------------


def test_colour_switches(llama: Path) -> None:
    _no_dtype(llama)
    plain = _cli("check", str(llama), "--static", "--no-out", env=cli_env(FORCE_COLOR="1", NO_COLOR="1"))
    assert "\x1b[" not in plain.stdout
    forced = _cli("check", str(llama), "--static", "--no-out", env=cli_env(FORCE_COLOR="1"))
    assert "\x1b[31m" in forced.stdout
    never = _cli("--color", "never", "check", str(llama), "--static", "--no-out", env=cli_env(FORCE_COLOR="1"))
    assert "\x1b[" not in never.stdout
    always = _cli("--color", "always", "check", str(llama), "--static", "--no-out")
    assert "\x1b[" in always.stdout


def test_progress_lines_when_not_a_tty(llama: Path) -> None:
    r = _cli("check", str(llama), "--static", "--no-out")
    assert "npu-preflight: static checks" in r.stderr and "\r" not in r.stderr


def test_text_wraps_to_the_terminal(llama: Path) -> None:
    from npu_preflight.model import Finding, Location, Severity
    from npu_preflight.reports.text import finding_lines

    f = Finding("CFG002", Severity.ERROR, "word " * 60, Location(file="config.json"), "fix " * 40)
    lines = finding_lines(f, width=60)
    assert len(lines) > 6 and all(len(x) <= 60 for x in lines)


def test_broken_pipe_is_quiet() -> None:
    r = subprocess.run(
        f"{PYTHON} -m npu_preflight checks | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=120,
    )
    assert r.stdout.count("\n") == 1 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


def test_common_mistakes_get_a_did_you_mean(llama: Path, tmp_path: Path) -> None:
    entry = tmp_path / "models--org--name"
    snap = entry / "snapshots" / "0123abcd"
    shutil.copytree(llama, snap)
    r = CliRunner().invoke(main, ["check", str(entry), "--static", "--no-out"])
    assert r.exit_code == 2 and "did you mean" in r.output and "0123abcd" in r.output
    r = CliRunner().invoke(main, ["check", str(tmp_path), "--static", "--no-out"])
    assert r.exit_code == 2 and "contains weight folders" in r.output
    r = CliRunner().invoke(main, ["check", str(llama), "--static", "--target-device", "910B", "--no-out"])
    assert r.exit_code == 2 and "910B3" in r.output and "did you mean" in r.output


# -- the Action and the pre-commit hook -----------------------------------------------------------


def _expand(text: str, values: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        return values[m.group(1).strip()]

    return re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", sub, text)


def test_the_actions_steps_run(llama: Path, tmp_path: Path) -> None:
    """action.yml's shell steps, run as the runner would (inputs and GitHub's files faked)."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    ws = tmp_path / "ws"
    shutil.copytree(llama, ws / "models" / "m")
    _no_dtype(ws / "models" / "m")
    (ws / "mc.json").write_text(json.dumps(MINDIE_MC))
    out, summary, temp = tmp_path / "gh_output", tmp_path / "summary.md", tmp_path / "runner_temp"
    temp.mkdir()
    values = {
        "inputs.paths": "models/m",
        "inputs.model-config": "mc.json",
        "inputs.args": "--static",
        "inputs.fail-on": "error",
        "inputs.install": "false",
        "inputs.upload-sarif": "true",
        "runner.temp": str(temp),
        "github.action_path": str(REPO),
    }
    env = cli_env(GITHUB_OUTPUT=str(out), GITHUB_STEP_SUMMARY=str(summary), GITHUB_WORKSPACE=str(ws))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "npu-preflight"
    shim.write_text(f'#!/bin/sh\nexec {PYTHON} -m npu_preflight "$@"\n')
    shim.chmod(0o755)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    codes = []
    for step in action["runs"]["steps"]:
        cond = step.get("if", "")
        if "inputs.install == 'true'" in cond:
            continue  # installed already
        if "uses" in step:
            assert (temp / "npu-preflight" / "sarif").is_dir() and list(
                (temp / "npu-preflight" / "sarif").glob("*.sarif")
            )
            continue
        step_env = {k: _expand(str(v), values) for k, v in (step.get("env") or {}).items()}
        if "steps.check.outputs" in step["run"]:
            outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
            values["steps.check.outputs.exit-code"] = outputs["exit-code"]
        proc = subprocess.run(
            ["bash", "-e", "-c", _expand(step["run"], values)],
            env={**env, **step_env},
            cwd=ws,
            capture_output=True,
            text=True,
            timeout=300,
        )
        codes.append(proc.returncode)
        if step.get("id") == "check":
            assert proc.returncode == 0, proc.stderr
            assert "::error file=models/m/config.json" in proc.stdout
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs == {"exit-code": "1", "verdict": "not_ready"}
    assert codes[-1] == 1  # the job fails on the verdict
    assert "npu-preflight: NOT READY" in summary.read_text()


@pytest.mark.slow
def test_pre_commit_hook_through_try_repo(tmp_path: Path) -> None:
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    if not os.path.exists(pre_commit):
        pytest.skip("pre-commit is not installed (requirements-dev.txt)")
    repo = tmp_path / "deploy"
    repo.mkdir()
    (repo / "model_config.yaml").write_text("backend_type: atb\nworld_size: 2\nrank: 2\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([*git, *cmd], cwd=repo, check=True, capture_output=True)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pc-home"))
    r = subprocess.run(
        [pre_commit, "try-repo", str(REPO), "npu-preflight-config", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "MC003" in r.stdout and "rank 2 is not below world_size 2" in r.stdout
