"""Shared fixtures: real tiny model folders built once per session and copied per test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import tests.props  # noqa: F401 - registers and loads the hypothesis profile before any test module
from npu_preflight.cli import registry
from npu_preflight.context import Context, RunOptions
from npu_preflight.model import Report, Severity
from npu_preflight.policy import Policy
from npu_preflight.runner import run
from tests.factory import Spec, build

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# A job started in the background by a non-interactive shell (`make test &`, nohup) inherits SIGINT
# ignored, and so would every CLI process the tests start: the Ctrl-C tests would then wait for a
# tool that, rightly, ignores Ctrl-C. Children of this process get the default disposition back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: The folder ``check`` writes to when given no ``--out``: a test that forgets ``--out``/``--no-out``
#: writes its reports into the checkout. The session fails if one does (see pytest_sessionfinish).
DEFAULT_OUT = REPO / "preflight-report"


def _stamp(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


_OUT_BEFORE = _stamp(DEFAULT_OUT)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test wrote reports into the repository's default output folder."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller checks once, after every worker
    if _stamp(DEFAULT_OUT) != _OUT_BEFORE:
        sys.stderr.write(
            f"\nA test wrote reports into {DEFAULT_OUT} (a check run without --out or --no-out); "
            "tests must write under tmp_path.\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: A complete, valid model_config for one rank on one device (MindIE's required keys included).
MINDIE_MC: dict[str, Any] = {
    "backend_type": "atb",
    "world_size": 1,
    "rank": 0,
    "local_rank": 0,
    "npu_device_id": 0,
    "trust_remote_code": False,
}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Spec], Path]:
    """Build each distinct toy folder once per session; tests get copies via ``make_model``."""
    root = tmp_path_factory.mktemp("models")
    built: dict[str, Path] = {}

    def get(spec: Spec) -> Path:
        key = repr(spec)
        if key not in built:
            built[key] = build(root / f"m{len(built)}", spec)
        return built[key]

    return get


@pytest.fixture
def make_model(model_cache: Callable[[Spec], Path], tmp_path: Path) -> Callable[..., Path]:
    """A fresh, writable copy of a clean toy folder: ``make_model(family="qwen2", tie=True)``."""
    counter = iter(range(1000))

    def make(**kw: Any) -> Path:
        src = model_cache(Spec(**kw))
        dst = tmp_path / f"w{next(counter)}"
        shutil.copytree(src, dst)
        return dst

    return make


@pytest.fixture
def llama(make_model: Callable[..., Path]) -> Path:
    """A clean single-file Llama-style folder (bf16, untied, with tokenizer)."""
    return make_model()


@pytest.fixture
def sharded(make_model: Callable[..., Path]) -> Path:
    """A clean sharded Llama-style folder with an index."""
    return make_model(shard_bytes=40_000)


def check_folder(
    path: Path,
    model_config: Mapping[str, Any] | None = None,
    *,
    select: str | None = None,
    options: RunOptions | None = None,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Run the static checks (or ``options``) on ``path`` in-process."""
    from npu_preflight.policy import parse_ids

    ctx = Context(path, model_config, options=options or RunOptions(static=True), env=env or {})
    return run(ctx, registry().specs, Policy(select=parse_ids(select)))


def ids(report: Report, severity: Severity | None = None) -> list[str]:
    """Check ids of the findings (optionally of one severity)."""
    return [f.check_id for f in report.findings if severity is None or f.severity is severity]


def problems(report: Report) -> list[str]:
    """Ids of error and warning findings."""
    return [f.check_id for f in report.findings if f.severity is not Severity.INFO]


def only(report: Report, check_id: str) -> list[Any]:
    """The findings of one check."""
    return [f for f in report.findings if f.check_id == check_id]


def validate_report(doc: dict[str, Any]) -> None:
    """Raise if ``doc`` does not satisfy schemas/report.schema.json."""
    import jsonschema

    from npu_preflight.schemas import load

    jsonschema.Draft202012Validator(
        load("report.schema.json"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)


@pytest.fixture(scope="session", autouse=True)
def _every_written_report_validates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, every report.json any test wrote must validate against the schema."""
    yield
    base = tmp_path_factory.getbasetemp()
    bad = []
    for p in base.rglob("report.json"):
        try:
            validate_report(json.loads(p.read_text()))
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{p}: {exc}")
    assert not bad, "reports that do not validate:\n" + "\n".join(bad)


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for running the CLI as a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


PYTHON = sys.executable
