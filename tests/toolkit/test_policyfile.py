"""Finding the policy file: every pyproject.toml above the folder is looked at, most are not ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from npu_preflight.policyfile import find


@pytest.mark.parametrize(
    "table",
    [
        "[tool.npu-preflight]\nfail-on = 'warning'\n",
        '[tool."npu-preflight"]\nfail-on = "warning"\n',
        "[tool.'npu-preflight']\nfail-on = 'warning'\n",
        "[tool]\nnpu-preflight = { fail-on = 'warning' }\n",
        "[tool . npu-preflight]\nfail-on = 'warning'\n",
    ],
)
def test_a_pyproject_with_our_table_is_found_however_it_is_spelled(tmp_path: Path, table: str) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n" + table)
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find(tmp_path / "a" / "b") == tmp_path / "pyproject.toml"


@pytest.mark.parametrize(
    "body",
    [
        "[project]\nname = 'npu-preflight'\n",  # names us, but has no [tool.npu-preflight] table
        "[tool.ruff]\nline-length = 120\n",
        "[tool.npu-preflight\n",  # broken TOML is not a policy file here (reading it names the error)
        "",
    ],
)
def test_a_pyproject_without_it_is_passed_over(tmp_path: Path, body: str) -> None:
    (tmp_path / "pyproject.toml").write_text(body)
    (tmp_path / "sub").mkdir()
    found = find(tmp_path / "sub")
    assert found is None or not str(found).startswith(str(tmp_path))


def test_the_nearest_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".npu-preflight.toml").write_text("fail-on = 'error'\n")
    inner = tmp_path / "repo"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[tool.npu-preflight]\nfail-on = 'warning'\n")
    assert find(inner) == inner / "pyproject.toml"
    assert find(tmp_path) == tmp_path / ".npu-preflight.toml"


def test_a_found_pyproject_is_parsed_once_and_read_as_load_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npu_preflight import policyfile

    (tmp_path / "pyproject.toml").write_text("[tool.npu-preflight]\nfail-on = 'warning'\nignore = ['SEC006']\n")
    calls: list[Path] = []
    real = policyfile._parse_toml

    def counting(path: Path, raw: bytes) -> dict:  # type: ignore[type-arg]
        calls.append(path)
        return real(path, raw)

    monkeypatch.setattr(policyfile, "_parse_toml", counting)
    found = policyfile.discover(tmp_path)
    assert calls == [tmp_path / "pyproject.toml"]
    assert found == policyfile.load(tmp_path / "pyproject.toml")
    assert found is not None and found.values["fail-on"] == "warning"
