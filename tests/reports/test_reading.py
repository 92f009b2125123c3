"""Reports people read: findings readable with JavaScript and CSS blocked (a CI server's CSP), what
was not checked said in every format, accessibility checked with axe-core in Chromium."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from npu_preflight.cli import main
from npu_preflight.model import Report
from npu_preflight.reports import markdown, text
from tests.conftest import MINDIE_MC

REPO = Path(__file__).resolve().parents[2]
JENKINS_CSP = "sandbox; default-src 'none'; style-src 'self'"


@pytest.fixture(scope="module")
def broken_report(tmp_path_factory: pytest.TempPathFactory, model_cache: Any) -> Path:
    """A folder with an error (no torch_dtype) and a few warnings, checked --static with a target."""
    from tests.factory import Spec

    src = model_cache(Spec(family="llama"))
    folder = tmp_path_factory.mktemp("broken") / "m"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("torch_dtype", None)
    cfg.pop("dtype", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    out = folder.parent / "rep"
    res = CliRunner().invoke(
        main,
        ["check", str(folder), "--static", "--target-device", "910B4", "--set", "world_size=3", "--out", str(out)],
    )
    assert res.exit_code == 1, res.output
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        yield b
        b.close()


def _errors(rep: Path) -> list[dict[str, Any]]:
    doc = json.loads((rep / "report.json").read_text())
    return [f for f in doc["findings"] if f["severity"] == "error"]


@pytest.mark.browser
def test_findings_read_without_javascript(browser: Any, broken_report: Path) -> None:
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    page.goto((broken_report / "report.html").as_uri())
    body = page.locator("#findings").inner_text()
    for f in _errors(broken_report):
        assert f["message"] in body
    assert page.locator("#findings tbody tr[data-sev=error]").count() == len(_errors(broken_report))
    assert "needs JavaScript" not in page.content()
    assert page.locator("button.explain").first.is_hidden()  # script-only controls stay hidden
    ctx.close()


@pytest.mark.browser
def test_findings_read_under_the_jenkins_csp(browser: Any, broken_report: Path) -> None:
    """Jenkins' HTML publisher serves reports with `sandbox; default-src 'none'; style-src 'self'`:
    no script, no inline style. The error must still be on the page, as text."""
    html = (broken_report / "report.html").read_text()
    ctx = browser.new_context()
    page = ctx.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text))
    page.route(
        "http://jenkins.invalid/**",
        lambda route: route.fulfill(
            status=200, body=html, content_type="text/html", headers={"Content-Security-Policy": JENKINS_CSP}
        ),
    )
    page.goto("http://jenkins.invalid/job/x/preflight/report.html")
    body = page.locator("body").inner_text()
    for f in _errors(broken_report):
        assert f["message"] in body
    assert "What was checked" in body and "Skipped checks" in body
    assert any("Content Security Policy" in b or "Refused" in b for b in blocked)  # the CSP really applied
    page.screenshot(path=str(_artifacts() / "report-jenkins-csp.png"), full_page=True)
    ctx.close()


def _artifacts() -> Path:
    p = REPO / "test-artifacts"
    p.mkdir(exist_ok=True)
    return p


@pytest.mark.browser
def test_accessibility_and_keyboard_sorting(browser: Any, broken_report: Path) -> None:
    from axe_playwright_python.sync_playwright import Axe

    ctx = browser.new_context(bypass_csp=True)
    page = ctx.new_page()
    page.goto((broken_report / "report.html").as_uri())
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not serious, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in serious]
    # sorting from the keyboard: focus the header's button, press Enter, aria-sort follows
    btn = page.locator("#findings button.sort[data-key=id]")
    btn.focus()
    page.keyboard.press("Enter")
    th = page.locator("#findings th:has(button[data-key=id])")
    assert th.get_attribute("aria-sort") == "ascending"
    ids = [page.locator("#findings tbody tr").nth(i).get_attribute("data-id") for i in range(3)]
    assert ids == sorted(ids)
    page.keyboard.press("Enter")
    assert th.get_attribute("aria-sort") == "descending"
    # passed checks are collapsed, failed ones open; the status filter opens what it selects
    assert page.locator("details.checks-group[data-status=passed]").get_attribute("open") is None
    assert page.locator("details.checks-group[data-status=failed]").get_attribute("open") is not None
    page.select_option("#c-status", "passed")
    assert page.locator("details.checks-group[data-status=passed]").get_attribute("open") is not None
    page.screenshot(path=str(_artifacts() / "report-a11y.png"), full_page=True)
    ctx.close()


def test_memory_picture_draws_the_overflow(tmp_path: Path, make_model: Any) -> None:
    """Over budget: the part past the budget is drawn in red and the headline says by how much."""
    m = make_model(family="llama", kv_heads=4, max_position=8192)
    out = tmp_path / "r"
    args = ["check", str(m), "--static", "--target-device", "910B4", "--out", str(out)]
    for k, v in {**MINDIE_MC, "max_seq_len": 8192, "max_batch_size": 10000}.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    page = (out / "report.html").read_text()
    assert 'class="over"' in page and "does not fit — over by" in page
    doc = json.loads((out / "report.json").read_text())
    kv = doc["memory"]["kv"]
    assert kv["max_seq_len_fit"] <= kv["max_positions"]  # never beyond the model's positions


def test_fit_line_is_honest(tmp_path: Path, llama: Path) -> None:
    """A roomy target: every length up to the model's positions fits; no 'up to 999,936'."""
    out = tmp_path / "r"
    res = CliRunner().invoke(
        main, ["check", str(llama), "--static", "--target-device", "H200", "--set", "world_size=1", "--out", str(out)]
    )
    assert "every length up to the model's 512 positions" in res.output, res.output
    res = CliRunner().invoke(
        main,
        ["plan", str(llama), "--target-device", "H200", "--set", "world_size=1", "--set", "max_seq_len=1048576"],
    )
    assert "max_seq_len 1,048,576 is outside what MindIE accepts" in res.output


def test_coverage_and_init_not_run_in_text_and_markdown(broken_report: Path) -> None:
    from npu_preflight.cli import _load_report

    report: Report = _load_report(str(broken_report / "report.json"))
    t = text.render(report)
    assert "COVERAGE:" in t and "init not requested (--static)" in t
    assert "→ give a model_config" not in t  # one was given (--set world_size=3)
    assert 'model_config: {"world_size": 3}' in t
    m = markdown.render(report)
    assert "### Coverage" in m and "| skipped | because | to run them |" in m
    assert "2 errors" in t


def test_coverage_names_what_would_enable_it(llama: Path) -> None:
    res = CliRunner().invoke(main, ["check", str(llama), "--static", "--no-out"])
    assert "→ give a model_config" in res.output
    assert "→ give --target-device NAME" in res.output
    res = CliRunner().invoke(main, ["check", str(llama), "--static", "--no-out", "--format", "json"])
    cov = json.loads(res.stdout)["summary"]["coverage"]
    assert cov["init"] == "not requested (--static)" and cov["ran"] + cov["skipped"] == cov["total"]
    assert any(g["enable"] and "model_config" in g["enable"] for g in cov["skipped_groups"])


def test_init_blocked_is_said(llama: Path, tmp_path: Path) -> None:
    cfg = json.loads((llama / "config.json").read_text())
    cfg.pop("torch_dtype", None)
    cfg.pop("dtype", None)
    (llama / "config.json").write_text(json.dumps(cfg))
    args = ["check", str(llama), "--device", "cpu", "--no-out"]
    for k, v in MINDIE_MC.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    res = CliRunner().invoke(main, args)
    assert "init not run: blocked by errors found earlier: CFG002" in res.output, res.output


def test_explain_renders_code_spans() -> None:
    res = CliRunner().invoke(main, ["explain", "CFG002"])
    assert "``" not in res.output and "torch_dtype" in res.output
    from npu_preflight.doctext import for_html

    assert for_html("a ``<b>`` c") == "a <code>&lt;b&gt;</code> c"
