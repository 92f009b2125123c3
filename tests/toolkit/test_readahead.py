"""The tokenizer read-ahead: a forked child reads tokenizer.json while the program starts; the run
takes its summary only for the file it would read itself, and otherwise reads the file as it does
without one. Every test here holds a result to what the run reads with no read-ahead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight import readahead
from npu_preflight.formats.tokenizer import TokenizerInfo, read_tokenizer_json
from tests.conftest import PYTHON, REPO, cli_env
from tests.factory import write_large_tokenizer
from tests.props import prop

VOCAB = 40_000  # a 1.6 MB tokenizer.json: over readahead.MIN_BYTES
ADDED = 200


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    yield
    readahead.discard()


@pytest.fixture
def folder(make_model: Callable[..., Path]) -> Path:
    """A real model whose embedding covers a 40,200-id tokenizer.json; tokenizer_config.json names
    two added tokens as bos and eos, and a pad token that is not in the vocabulary."""
    path = make_model(vocab=VOCAB + ADDED + 56)
    write_large_tokenizer(path, vocab=VOCAB, added=ADDED)
    tc = json.loads((path / "tokenizer_config.json").read_text())
    tc["pad_token"] = {"content": "<absent pad>"}
    tc["unk_token"] = "ab"  # a short word: likely in the generated vocabulary
    (path / "tokenizer_config.json").write_text(json.dumps(tc))
    assert (path / "tokenizer.json").stat().st_size > readahead.MIN_BYTES
    return path


def _started(folder: Path) -> readahead._Child:
    assert readahead.start(["check", str(folder), "--static"])
    assert readahead._child is not None
    return readahead._child


def _wait_done(child: readahead._Child) -> None:
    """Until the child has written everything and exited (it stays a zombie: claim reaps it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError("the read-ahead child did not finish")


def _same(got: TokenizerInfo, want: TokenizerInfo, probes: list[str]) -> None:
    assert (got.model_type, got.max_id, got.size, got.added) == (want.model_type, want.max_id, want.size, want.added)
    for text in probes:
        assert got.token_to_id.get(text) == want.token_to_id.get(text), text
        assert (text in got.token_to_id) == (text in want.token_to_id), text


def _reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_claimed_tokenizer_is_the_one_the_run_reads(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The special tokens come from the summary with no read by the run; any other lookup, the
    length and the items read the file once, and everything equals a read of the file."""
    reads: list[Path] = []
    real = readahead._read_again
    monkeypatch.setattr(readahead, "_read_again", lambda p, e: reads.append(p) or real(p, e))
    child = _started(folder)
    path = folder / "tokenizer.json"
    got = readahead.claim(path)
    assert got is not None and readahead._child is None and _reaped(child.pid)
    want = read_tokenizer_json(path)
    _same(got, want, ["<|special_0|>", "<|special_1|>", "<absent pad>", "ab"])
    assert reads == []  # the special tokens and the largest id needed no read
    _same(got, want, ["<|special_7|>", "zz", "", "<|special_0|>"])
    assert len(got.token_to_id) == len(want.token_to_id)
    assert dict(got.token_to_id.items()) == dict(want.token_to_id.items())
    assert reads == [path]  # once


def test_nothing_is_started_where_it_would_not_pay(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (small / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "tokenizer.json")
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    f = str(folder)
    assert readahead.folder_of(["check", f]) == (f, (folder / "tokenizer.json").stat().st_size)
    assert readahead.folder_of(["--color", "never", "check", "--static", f, "--out", "x"])[0] == f
    assert readahead.folder_of(["check", "--select", "TOK", f, f])[0] == f  # the same folder twice
    for argv in (
        [f],  # not the check command
        ["explain", f],
        ["check", str(small)],  # the run reads a small file faster than a fork
        ["check", str(fifo)],  # not a regular file: the run says so
        ["check", f, str(other)],  # two folders: each is checked in its own process
        ["check", "--out", str(other), f],  # an option's value that is a folder too: no guess
        ["check", "-", "", "\0", "x" * 5000, str(tmp_path / "absent")],
    ):
        assert readahead.folder_of(argv) is None, argv
        assert not readahead.start(argv)
    monkeypatch.setenv(readahead.ENV_VAR, "0")
    assert not readahead.start(["check", f])
    monkeypatch.delenv(readahead.ENV_VAR)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not readahead.start(["check", f])  # one CPU: the fork would only take its time
    assert readahead._child is None


def _rewrite(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["added_tokens"][0]["id"] = 10**9  # the largest id changes
    path.write_text(json.dumps(doc, ensure_ascii=False))


@pytest.mark.parametrize("change", ["rewritten", "replaced", "touched", "removed"])
def test_a_file_that_changed_after_the_child_read_it_is_read_again(folder: Path, change: str) -> None:
    path = folder / "tokenizer.json"
    child = _started(folder)
    _wait_done(child)
    if change == "rewritten":
        _rewrite(path)
    elif change == "replaced":
        copy = folder / "copy.json"
        copy.write_bytes(path.read_bytes())
        copy.replace(path)  # the same bytes in another inode
    elif change == "touched":
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    else:
        path.unlink()
    assert readahead.claim(path) is None
    assert _reaped(child.pid)
    if change == "rewritten":
        assert read_tokenizer_json(path).max_id == 10**9


def test_a_file_that_changes_before_a_whole_read_is_refused(folder: Path) -> None:
    """The summary was for one file; a lookup it does not answer must read that same file."""
    path = folder / "tokenizer.json"
    _started(folder)
    got = readahead.claim(path)
    assert got is not None
    _rewrite(path)
    with pytest.raises(Exception, match="changed while it was being checked"):
        got.token_to_id.get("not a special token")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGSTOP])
def test_a_child_that_dies_or_stops_costs_a_read_and_nothing_else(
    folder: Path, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readahead, "WAIT_S", 0.5)
    monkeypatch.setattr(readahead, "WAIT_BYTES_PER_S", 10**12)
    import faulthandler

    real = readahead.child_result

    ready = folder / "ready"

    def slow(f: Path) -> bytes:
        faulthandler.disable()  # pytest's, which the child inherits, would print the crash
        ready.touch()
        time.sleep(60)  # still running when the signal comes
        return real(f)

    monkeypatch.setattr(readahead, "child_result", slow)
    child = _started(folder)
    while not ready.exists():
        time.sleep(0.005)
    os.kill(child.pid, sig)
    t0 = time.monotonic()
    assert readahead.claim(folder / "tokenizer.json") is None
    assert time.monotonic() - t0 < 10
    assert _reaped(child.pid)


LIES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "not JSON": lambda doc: b"\xff{",
    "nothing": lambda doc: b"",
    "another file": lambda doc: {**doc, "identity": [v + 1 for v in doc["identity"]]},
    "a short identity": lambda doc: {**doc, "identity": doc["identity"][:4]},
    "a bool id": lambda doc: {**doc, "summary": {**doc["summary"], "max_id": True}},
    "an answer above the largest id": lambda doc: {
        **doc,
        "summary": {**doc["summary"], "answers": {"<|special_0|>": doc["summary"]["max_id"] + 1}},
    },
    "an added token above the largest id": lambda doc: {
        **doc,
        "summary": {**doc["summary"], "max_id": doc["summary"]["max_id"] - 1},
    },
    "a negative id": lambda doc: {**doc, "summary": {**doc["summary"], "added": {"x": -1}}},
    "an extra field": lambda doc: {**doc, "summary": {**doc["summary"], "extra": 1}},
    "a list": lambda doc: [doc],
    "too much": lambda doc: json.dumps(doc).encode() + b" " * (1 << 20),  # a summary, but over the cap
    "deep nesting": lambda doc: b"[" * 100_000,
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_child_that_lies_is_not_believed(folder: Path, lie: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = readahead.child_result

    def lying(f: Path) -> bytes:
        out = LIES[lie](json.loads(real(f)))
        return out if isinstance(out, bytes) else json.dumps(out).encode()

    monkeypatch.setattr(readahead, "child_result", lying)  # the forked child calls it
    monkeypatch.setattr(readahead, "MAX_SUMMARY", 1 << 20)
    _started(folder)
    assert readahead.claim(folder / "tokenizer.json") is None


def _summaries(seen: list[int]) -> st.SearchStrategy[bytes]:
    """Summaries with the right identity or a near one, and fields of every type and size."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8,
    )
    ids = st.integers(min_value=-2, max_value=2**70) | st.booleans() | json_values
    summary = st.fixed_dictionaries(
        {
            "model_type": st.none() | st.text(max_size=5) | json_values,
            "max_id": ids,
            "added": st.dictionaries(st.text(max_size=5), ids, max_size=3) | json_values,
            "answers": st.dictionaries(st.text(max_size=5), st.none() | ids, max_size=3) | json_values,
        },
        optional={"extra": json_values},
    )
    small = st.integers(min_value=0, max_value=1000)
    plausible = st.fixed_dictionaries(  # right types, ids that may or may not exceed the largest
        {
            "model_type": st.none() | st.text(max_size=5),
            "max_id": st.integers(min_value=-1, max_value=1100),
            "added": st.dictionaries(st.text(max_size=5), small, max_size=3),
            "answers": st.dictionaries(st.text(max_size=5), st.none() | small, max_size=3),
        }
    )
    identity = st.one_of(st.just(seen), st.just(seen), st.lists(st.integers(min_value=-1, max_value=2**64), max_size=6))
    docs = st.fixed_dictionaries(
        {"identity": identity, "summary": st.one_of(plausible, plausible, summary, json_values)}
    )
    return (
        docs.map(lambda d: json.dumps(d).encode())
        | json_values.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=300)
    )


_SAMPLE = Path(__file__).with_name("test_readahead.py")  # any regular file: only its identity counts


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _describes(doc: Any, seen: list[int]) -> bool:
    """The rule, written out: a summary of the file with identity ``seen``, every id an id and none
    above the largest."""
    if not (isinstance(doc, dict) and set(doc) == {"identity", "summary"} and doc["identity"] == seen):
        return False
    s = doc["summary"]
    if not (isinstance(s, dict) and set(s) == {"model_type", "max_id", "added", "answers"}):
        return False
    if not (s["model_type"] is None or isinstance(s["model_type"], str)):
        return False
    top = s["max_id"]
    if not (isinstance(top, int) and not isinstance(top, bool) and top >= -1):
        return False
    if not (isinstance(s["added"], dict) and isinstance(s["answers"], dict)):
        return False
    ids = [*s["added"].values(), *(v for v in s["answers"].values() if v is not None)]
    return all(_is_id(v) and v <= top for v in ids)


@prop(400)
@given(st.data())
def test_any_bytes_from_the_child_give_its_tokenizer_or_none(data: st.DataObject) -> None:
    """What the parent reads from the pipe is untrusted: bytes that are a summary of the file give
    the tokenizer it describes; any other bytes are refused."""
    from npu_preflight.formats.files import identity

    seen = list(identity(_SAMPLE.stat()))
    raw = data.draw(_summaries(seen))
    got = readahead._accept(raw, _SAMPLE)
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    assert (got is not None) == _describes(doc, seen)
    if got is not None:
        s = doc["summary"]
        assert (got.model_type, got.max_id, got.added) == (s["model_type"], s["max_id"], s["added"])
        for text, value in s["answers"].items():
            assert got.token_to_id.get(text) == value


def test_a_child_nobody_claims_is_killed_and_reaped(folder: Path) -> None:
    child = _started(folder)
    readahead.discard()
    assert readahead._child is None and _reaped(child.pid)
    assert readahead.claim(folder / "tokenizer.json") is None  # nothing left to claim


def _report(folder: Path, **env: str) -> tuple[list[Any], list[Any]]:
    out = subprocess.run(
        [PYTHON, "-m", "npu_preflight", "check", str(folder), "--static", "--no-out", "--format", "json"],
        capture_output=True,
        env=cli_env(**env),
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode in (0, 1), out.stderr.decode()
    doc = json.loads(out.stdout)
    return [(c["id"], c["status"], c.get("reason")) for c in doc["checks"]], doc["findings"]


def test_the_program_reports_the_same_with_and_without_the_read_ahead(folder: Path) -> None:
    """The installed program (``python -m npu_preflight``) on a folder whose tokenizer fits, then one
    whose tokenizer outgrows the embedding (TOK003 lists tokens: the whole vocabulary is read)."""
    for case in ("fits", "outgrows"):
        if case == "outgrows":
            write_large_tokenizer(folder, vocab=VOCAB + 500, added=ADDED)
        with_it, without = _report(folder), _report(folder, **{readahead.ENV_VAR: "0"})
        assert with_it == without, case
        tok003 = [f for f in with_it[1] if f["check_id"] == "TOK003"]
        assert bool(tok003) == (case == "outgrows")
        assert any(f["check_id"] == "TOK004" for f in with_it[1])  # the pad token that is not there


def _program(folder: Path, patch: str, *args: str) -> str:
    """The program's own entry point (``npu_preflight.__main__.main``) checking ``folder`` with
    ``args``, after ``patch`` (source run first, with ``readahead`` imported); its stderr."""
    code = (
        "import sys\n"
        "from npu_preflight import readahead\n"
        f"{patch}"
        "from npu_preflight.__main__ import main\n"
        "sys.argv = ['npu-preflight', 'check', sys.argv[1], '--static', '--no-out', *sys.argv[2:]]\n"
        "main()\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", code, str(folder), *args], capture_output=True, env=cli_env(), cwd=REPO, timeout=300
    )
    assert out.returncode in (0, 1), out.stderr.decode()
    return out.stderr.decode()


def test_the_program_starts_the_read_ahead_and_the_run_claims_it(folder: Path) -> None:
    """The program's entry point starts it, and the run takes the child's summary (a claim that
    fell back would be invisible in the report)."""
    patch = (
        "real = readahead.claim\n"
        "def claim(path):\n"
        "    got = real(path)\n"
        "    sys.stderr.write(f'CLAIMED {got is not None}\\n')\n"
        "    return got\n"
        "readahead.claim = claim\n"
    )
    assert "CLAIMED True" in _program(folder, patch)


def test_a_run_that_never_asks_leaves_no_child(folder: Path) -> None:
    """``check --select CFG`` never reads the tokenizer: the program kills and reaps the child as it
    ends (its ``atexit`` hook runs in ``end_process``), so nothing outlives the run."""
    patch = (
        "real = readahead._Child.finish\n"
        "def finish(self):\n"
        "    real(self)\n"
        "    sys.stderr.write(f'FINISHED {self.pid}\\n')\n"
        "readahead._Child.finish = finish\n"
    )
    err = _program(folder, patch, "--select", "CFG")
    lines = [ln for ln in err.splitlines() if ln.startswith("FINISHED ")]
    assert len(lines) == 1
    assert _reaped(int(lines[0].split()[1]))
