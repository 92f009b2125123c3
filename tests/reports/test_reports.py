"""Renderers: JSON schema, JUnit XSD, Markdown snapshot, GitHub annotations, render and diff."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from npu_preflight.cli import main
from npu_preflight.model import CheckRecord, Finding, Location, Report, Severity, Status
from npu_preflight.reports import RENDERERS, RenderOptions, github, html, junit, markdown
from npu_preflight.reports.diff import compare
from tests.conftest import PYTHON, REPO, check_folder, cli_env, validate_report
from tests.factory import fix_config

HOSTILE = "<img src=x onerror=alert(1)>"
SNAPSHOTS = Path(__file__).resolve().parents[1] / "data" / "snapshots"


def fixed_report() -> Report:
    """A deterministic report (no timestamps from the clock) for snapshots."""
    checks = (
        CheckRecord("CFG002", "config.json declares torch_dtype", "static", Status.FAILED, 0.001, None),
        CheckRecord("WT003", "tensor offsets and sizes are consistent", "static", Status.FAILED, 0.002, None),
        CheckRecord("MEM001", "the weights fit the device", "plan", Status.SKIPPED, 0.0, "no device | pipe"),
        CheckRecord("TOK006", "the chat template is present and renders", "static", Status.PASSED, 0.0, None),
    )
    findings = (
        Finding(
            "CFG002",
            Severity.ERROR,
            "config.json has no torch_dtype",
            Location(file="config.json", key="config.json:torch_dtype"),
            'Add "torch_dtype": "bfloat16".',
        ),
        Finding(
            "WT003",
            Severity.ERROR,
            f"tensor {HOSTILE} | ends past EOF",
            Location(file="model.safetensors", tensor=HOSTILE),
            "Copy the file again.",
        ),
        Finding("TOK006", Severity.INFO, "no chat template", Location(file="tokenizer_config.json")),
    )
    return Report(
        "0.1.0",
        "2026-11-25T12:00:00+00:00",
        0.123,
        "/models/m",
        {"world_size": 1},
        {"static": True},
        Severity.ERROR,
        checks,
        findings,
        memory={
            "world_size": 1,
            "weights_bytes": 2 * 2**30,
            "kv_cache_bytes": 2**30,
            "workspace_bytes": 2**28,
            "overhead_bytes": 2**31,
            "total_bytes": 5 * 2**30 + 2**28,
            "budget_bytes": 8 * 2**30,
            "headroom_bytes": 3 * 2**30 - 2**28,
            "measured_peak_bytes": 5 * 2**30,
            "predicted_peak_bytes": 5 * 2**30 + 2**27,
            "prediction_error_pct": 2.5,
            "device": {"name": "910B4", "total_bytes": 32 * 2**30},
            "kv": None,
        },
        init={
            "outcome": "ok",
            "summary": "fine",
            "generator": "transformers",
            "device": "cpu",
            "duration_s": 4.2,
            "stages": [{"stage": "import", "duration_s": 1.5}, {"stage": "weights", "duration_s": 2.0}],
        },
    )


def test_every_renderer_handles_the_fixed_report() -> None:
    r = fixed_report()
    for name, fn in RENDERERS.items():
        assert fn(r), name
    validate_report(json.loads(RENDERERS["json"](r)))


def test_markdown_snapshot() -> None:
    got = markdown.render(fixed_report())
    snap = SNAPSHOTS / "summary.md"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not snap.exists():
        snap.write_text(got)
    assert got == snap.read_text()
    assert "&lt;img" in got and "<img" not in got and "\\|" in got


def test_github_annotations_escape() -> None:
    r = fixed_report()
    lines = github.render(r).splitlines()
    assert lines[0].startswith("::error file=/models/m/config.json,title=CFG002::")
    bad = Finding("WT003", Severity.WARNING, "a: b, c\n100%", Location(file="a,b:c.safetensors"))
    from dataclasses import replace

    out = github.render(replace(r, findings=(bad,)))
    assert out.splitlines()[0] == "::warning file=/models/m/a%2Cb%3Ac.safetensors,title=WT003::a: b, c%0A100%25"


def test_junit_validates_against_xsd(llama: Path) -> None:
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(REPO / "tests" / "data" / "junit-10.xsd")))
    fix_config(llama, torch_dtype="float32")
    for r in (fixed_report(), check_folder(llama)):
        doc = etree.fromstring(junit.render(r).encode())
        assert schema.validate(doc), schema.error_log
        cases = doc.findall(".//testcase")
        assert len(cases) == len(r.checks)
    doc = etree.fromstring(junit.render(check_folder(llama)).encode())
    [failure] = [c for c in doc.findall(".//testcase") if c.get("name", "").startswith("CFG004")]
    assert failure.find("failure").get("type") == "error"
    assert doc.findall(".//skipped")


def test_html_escapes_and_is_self_contained() -> None:
    page = html.render(fixed_report(), RenderOptions(docs={"CFG002": "doc </script><script>alert(2)</script>"}))
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "</script><script>alert(2)" not in page
    for ref in ("http://", "https://", 'src="//', "<link"):
        assert ref not in page.replace("https://json-schema.org", "")


def _report_path(tmp_path: Path, folder: Path, *extra: str) -> Path:
    out = tmp_path / f"report-{folder.name}"
    res = CliRunner().invoke(main, ["check", str(folder), "--static", "--out", str(out), *extra])
    assert res.exit_code in (0, 1), res.output
    return out / "report.json"


def test_render_all_formats(llama: Path, tmp_path: Path) -> None:
    rp = _report_path(tmp_path, llama)
    for fmt in ("text", "json", "html", "junit", "markdown", "github"):
        res = CliRunner().invoke(main, ["render", str(rp), "--format", fmt])
        assert res.exit_code == 0 and res.stdout, fmt
    out = tmp_path / "page.html"
    assert CliRunner().invoke(main, ["render", str(rp), "--format", "html", "-o", str(out)]).exit_code == 0
    assert out.read_text().startswith("<!doctype html>")


def test_render_rejects_non_reports(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"verdict": "ready"}')
    res = CliRunner().invoke(main, ["render", str(bad)])
    assert res.exit_code == 2 and "not an npu-preflight report" in res.stderr
    bad.write_bytes(b"\xff")
    assert CliRunner().invoke(main, ["render", str(bad)]).exit_code == 2


def test_diff_real_reports(llama: Path, tmp_path: Path) -> None:
    a = _report_path(tmp_path / "a", llama)
    fix_config(llama, torch_dtype="float32")
    (llama / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    b = _report_path(tmp_path / "b", llama)
    res = CliRunner().invoke(main, ["diff", str(a), str(b)])
    assert res.exit_code == 1 and "ready → not_ready" in res.stdout and "+ error   CFG004" in res.stdout
    res = CliRunner().invoke(main, ["diff", str(b), str(a), "--format", "json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and not doc["worse"] and {f["check_id"] for f in doc["removed"]} >= {"CFG004", "WT018"}
    assert CliRunner().invoke(main, ["diff", str(a), str(a)]).exit_code == 0


def test_diff_changed_severity() -> None:
    from dataclasses import replace

    old = fixed_report()
    f = replace(old.findings[2], severity=Severity.ERROR, message="now an error")
    new = replace(old, findings=(old.findings[0], old.findings[1], f))
    d = compare(old, new)
    assert len(d.changed) == 1 and d.worse


@pytest.fixture
def hostile_folder(llama: Path) -> Path:
    """A folder whose tensor names and messages carry an HTML payload, and a broken shard."""
    save_file(
        {HOSTILE: np.zeros(4, np.float16), "model.embed_tokens.weight": np.zeros((320, 64), np.float16)},
        str(llama / "extra.safetensors"),
        metadata={"format": "pt"},
    )
    p = llama / "model.safetensors"
    with open(p, "r+b") as fh:
        fh.truncate(p.stat().st_size - 64)
    return llama


@pytest.mark.browser
@pytest.mark.slow
def test_html_in_a_real_browser(hostile_folder: Path, tmp_path: Path) -> None:
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "rep"
    res = CliRunner().invoke(
        main,
        [
            "check",
            str(hostile_folder),
            "--static",
            "--target-device",
            "910B4",
            "--set",
            "world_size=1",
            "--set",
            "max_seq_len=4096",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1, res.output
    page_path = out / "report.html"
    doc = json.loads((out / "report.json").read_text())
    n_errors = doc["summary"]["errors"]
    console, requests, dialogs = [], [], []
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: console.append(m) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(e))
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        assert page.locator("#verdict").get_attribute("data-verdict") == "not_ready"
        rows = page.locator("#findings tbody tr[data-sev]")
        total = rows.count()
        assert total == len(doc["findings"])
        page.select_option("#f-sev", "error")
        assert page.locator("#findings tbody tr[data-sev]:not(.hidden)").count() == n_errors < total
        page.select_option("#f-sev", "")
        page.select_option("#f-dom", "WT")
        wt = sum(1 for f in doc["findings"] if f["check_id"].startswith("WT"))
        assert page.locator("#findings tbody tr[data-sev]:not(.hidden)").count() == wt
        page.select_option("#f-dom", "")
        page.click("#findings button.sort[data-key=sev]")
        first = page.locator("#findings tbody tr").first.get_attribute("data-sev")
        page.click("#findings button.sort[data-key=sev]")
        assert {first, page.locator("#findings tbody tr").first.get_attribute("data-sev")} >= {"error"}
        page.locator("button.explain").first.click()
        assert "Bad:" in page.locator("tr.doc-row div.doc").first.inner_text()
        page.locator("button.explain").first.click()
        assert page.locator("tr.doc-row").count() == 0
        page.locator("button.explain").first.click()
        assert page.locator("#memory-chart rect").count() >= 4
        assert page.locator("#findings img").count() == 0
        assert HOSTILE in page.locator("#findings").inner_text()
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        page.set_viewport_size({"width": 380, "height": 800})
        page.screenshot(path=str(artifacts / "report-narrow.png"), full_page=True)
        page.emulate_media(media="print")
        browser.close()
    assert not console, [str(c) for c in console]
    assert not dialogs
    assert requests == [page_path.as_uri()]


def test_cli_check_writes_html_and_junit(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    p = subprocess.run(
        [PYTHON, "-m", "npu_preflight", "check", str(llama), "--static", "--out", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=120,
    )
    assert p.returncode == 0
    assert {x.name for x in out.iterdir()} == {"report.json", "report.html", "junit.xml", "sarif.json"}
    assert (out / "report.html").stat().st_mode & 0o044
