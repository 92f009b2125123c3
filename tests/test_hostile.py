"""Hostile inputs: files that run code when loaded, files that hang a reader, values that once
crashed the tool, inputs that amplify into gigabytes. Each ends with the right finding, a report,
and a defined exit code.

Every pickle payload here is first shown to be live — loading it for real (in a throwaway
subprocess) creates a marker file — and then the scanner must catch it, with the marker absent
afterwards and the verdict not ready.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from npu_preflight.cli import main
from npu_preflight.model import Severity
from tests.conftest import MINDIE_MC, PYTHON, check_folder, only, validate_report

# -- pickle payloads --------------------------------------------------------------------------


def _cmd(marker: Path) -> bytes:
    return f"touch {marker}".encode()


def proto0_inst(marker: Path) -> bytes:
    """Protocol 0 INST: no PROTO header, starts with MARK + STRING."""
    return b"(S'" + _cmd(marker) + b"'\nios\nsystem\n."


def classic_global(marker: Path, head: bytes = b"") -> bytes:
    return head + b"cos\nsystem\n(S'" + _cmd(marker) + b"'\ntR."


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def decoy_pops(marker: Path) -> bytes:
    """STACK_GLOBAL whose last two *pushed* strings are a safe decoy that was popped again."""
    return (
        b"\x80\x04"
        + _u("posix")
        + _u("system")
        + _u("collections")
        + _u("OrderedDict")
        + b"00"  # POP POP: the decoy leaves the stack
        + b"\x93"  # STACK_GLOBAL -> posix.system
        + b"\x8c"
        + bytes([len(_cmd(marker))])
        + _cmd(marker)
        + b"\x85R."  # TUPLE1 REDUCE STOP
    )


def memo_drift(marker: Path) -> bytes:
    """Memo indices that drift for a scanner that only memoises strings."""
    return (
        b"\x80\x04"
        + b"}\x94}\x94"  # two EMPTY_DICTs memoised: real memo 0, 1
        + _u("posix")
        + b"\x94"  # memo 2
        + _u("system")
        + b"\x94"  # memo 3
        + b"00"
        + _u("collections")
        + b"\x94"  # memo 4
        + _u("OrderedDict")
        + b"\x94"  # memo 5
        + b"00"
        + b"h\x02h\x03"  # BINGET 2, BINGET 3: posix, system (a drifting scanner reads collections, OrderedDict)
        + b"\x93"
        + b"\x8c"
        + bytes([len(_cmd(marker))])
        + _cmd(marker)
        + b"\x85R."
    )


def after_big_bytes(marker: Path, size: int = 64 * 1024 * 1024 + 8) -> bytes:
    """A payload placed after a 64 MiB BINBYTES8 argument (popped again)."""
    return b"\x80\x04\x8e" + struct.pack("<Q", size) + b"\0" * size + b"0" + classic_global(marker)


RAW_PAYLOADS = {
    "proto0-inst": proto0_inst,
    "no-proto-header": lambda m: classic_global(m),
    "proto1-header": lambda m: classic_global(m, b"\x80\x01"),
    "leading-none-pop": lambda m: classic_global(m, b"N0"),
    "decoy-pops": decoy_pops,
    "memo-drift": memo_drift,
}

LOADERS = {
    "pickle": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
    "torch": "import sys,torch; torch.load(sys.argv[1], weights_only=False)",
    "numpy": "import sys,numpy; numpy.load(sys.argv[1], allow_pickle=True)",
    "numpy-npz": "import sys,numpy; z=numpy.load(sys.argv[1], allow_pickle=True); [z[k] for k in z.files]",
}


def prove_live(path: Path, marker: Path, loader: str = "pickle") -> None:
    """Load the file for real, in a throwaway process: the payload must create the marker."""
    assert not marker.exists()
    subprocess.run([PYTHON, "-c", LOADERS[loader], str(path)], capture_output=True, timeout=300)
    assert marker.exists(), f"the {loader} payload in {path.name} did not run: the test proves nothing"
    marker.unlink()


def assert_caught(folder: Path, marker: Path, file: str) -> None:
    r = check_folder(folder)
    errors = [f for f in only(r, "SEC001") if f.severity is Severity.ERROR and f.location.file == file]
    assert errors, [f.message for f in r.findings]
    assert r.verdict == "not_ready"
    assert not marker.exists()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "EXECUTED"


@pytest.mark.parametrize("kind", sorted(RAW_PAYLOADS))
@pytest.mark.parametrize("name", ["pytorch_model.bin", "optimizer.pt"])
def test_raw_pickle_payloads(llama: Path, marker: Path, kind: str, name: str) -> None:
    path = llama / name
    path.write_bytes(RAW_PAYLOADS[kind](marker))
    prove_live(path, marker)
    assert_caught(llama, marker, name)


@pytest.mark.parametrize("kind", sorted(RAW_PAYLOADS))
def test_payloads_inside_a_real_torch_zip(llama: Path, marker: Path, tmp_path: Path, kind: str) -> None:
    import torch

    clean = tmp_path / "clean.pt"
    torch.save({"w": torch.zeros(4)}, str(clean))
    path = llama / "pytorch_model.bin"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = RAW_PAYLOADS[kind](marker)
            dst.writestr(info, data)
    prove_live(path, marker, "torch")
    assert_caught(llama, marker, "pytorch_model.bin")


def test_payload_after_64_mib_of_bytes(llama: Path, marker: Path) -> None:
    path = llama / "pytorch_model.bin"
    path.write_bytes(after_big_bytes(marker))
    prove_live(path, marker)
    r = check_folder(llama)
    [f] = [f for f in only(r, "SEC001") if f.severity is Severity.ERROR]
    assert f.details["global"] == "os.system" and r.verdict == "not_ready"


def test_npy_and_npz_object_arrays(llama: Path, marker: Path) -> None:
    import numpy as np

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    arr = np.empty(1, dtype=object)
    arr[0] = Boom()
    np.save(llama / "extra.npy", arr)
    prove_live(llama / "extra.npy", marker, "numpy")
    assert_caught(llama, marker, "extra.npy")
    (llama / "extra.npy").unlink()
    np.savez(llama / "extra.npz", a=arr)
    prove_live(llama / "extra.npz", marker, "numpy-npz")
    assert_caught(llama, marker, "extra.npz")


def test_file_named_by_the_pickle_index_is_scanned_whatever_its_name(llama: Path, marker: Path) -> None:
    (llama / "weights.dat").write_bytes(proto0_inst(marker))
    (llama / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"lm_head.weight": "weights.dat"}})
    )
    prove_live(llama / "weights.dat", marker)
    assert_caught(llama, marker, "weights.dat")


def test_truncated_stream_cannot_be_shown_safe(llama: Path) -> None:
    data = pickle.dumps({"a": 1}, protocol=2)[:-1]  # no STOP
    (llama / "pytorch_model.bin").write_bytes(data)
    r = check_folder(llama)
    [f] = only(r, "SEC001")
    assert f.severity is Severity.ERROR and "cannot be shown safe" in f.message


def test_legacy_torch_file_with_storage_bytes_passes(llama: Path, tmp_path: Path) -> None:
    import torch

    torch.save(
        {"w": torch.arange(64, dtype=torch.float32)},
        str(llama / "pytorch_model.bin"),
        _use_new_zipfile_serialization=False,
    )
    assert only(check_folder(llama), "SEC001") == []


def test_listing_cap_is_a_finding(llama: Path, monkeypatch: pytest.MonkeyPatch, marker: Path) -> None:
    import npu_preflight.context as context

    monkeypatch.setattr(context, "MAX_LISTING", 12)
    for i in range(20):
        (llama / f"zz-{i:02d}.txt").write_text("x")
    r = check_folder(llama)
    [f] = only(r, "WT019")
    assert f.severity is Severity.ERROR and r.verdict == "not_ready"


# -- hangs -----------------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e.update(env or {})
    return subprocess.run(
        [PYTHON, "-m", "npu_preflight", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
        "model.safetensors",
    ],
)
def test_fifo_in_place_of_a_file_does_not_hang(llama: Path, tmp_path: Path, name: str) -> None:
    target = llama / name
    if target.exists():
        target.unlink()
    os.mkfifo(target)
    out = tmp_path / "rep"
    p = _cli(["check", str(llama), "--static", "--out", str(out), "--format", "json"], timeout=120)
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads((out / "report.json").read_text())
    validate_report(doc)
    assert any(f["check_id"] == "SEC007" and f["location"]["file"] == name for f in doc["findings"])
    assert doc["summary"]["checks"]["errored"] == 0


def test_link_to_a_fifo_does_not_hang(llama: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (llama / "pytorch_model.bin").symlink_to(fifo)
    p = _cli(["check", str(llama), "--static", "--no-out", "--format", "json"])
    doc = json.loads(p.stdout)
    assert any(f["check_id"] == "SEC007" for f in doc["findings"]), [f["check_id"] for f in doc["findings"]]


def test_rank_table_fifo_and_verify_metadata_fifo(llama: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "ranktable"
    os.mkfifo(fifo)
    p = _cli(
        ["check", str(llama), "--static", "--no-out", "--format", "json", "--set", "world_size=2"],
        env={"RANK_TABLE_FILE": str(fifo)},
    )
    doc = json.loads(p.stdout)
    [f] = [f for f in doc["findings"] if f["check_id"] == "ENV005"]
    assert "FIFO" in f["message"]
    meta = llama / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    os.mkfifo(meta / "config.json.metadata")
    p = _cli(["verify", str(llama)])
    assert p.returncode == 2 and "nothing to verify" in p.stderr


def test_a_hundred_million_layers(llama: Path, tmp_path: Path) -> None:
    from tests.factory import fix_config

    fix_config(llama, num_hidden_layers=100_000_000)
    p = _cli(["check", str(llama), "--static", "--no-out", "--format", "json"], timeout=120)
    doc = json.loads(p.stdout)
    [f] = [f for f in doc["findings"] if f["check_id"] == "ARCH002" and "99,999,999" in f["message"]]
    assert f["details"]["declared"] == 100_000_000 and p.returncode == 1


@pytest.mark.parametrize(
    ("template", "limit"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "time"),
        # output that piles up, 10 kB a step: the 512 MiB cap comes in well under a second, far from
        # the 5 s limit even on a loaded machine. (One constant "x" a step — Jinja2 folds constants,
        # so a constant 'x' * 10000 is the same — adds 8 bytes a step and took 4.5 s to reach the
        # cap: on a busy 2-core runner the time limit came first.)
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'x' * (10000 + j) }}{% endfor %}{% endfor %}",
            "memory",
        ),
        ("{{ 'a' * 4000000000 }}", "memory"),
    ],
)
def test_runaway_chat_templates_are_contained(llama: Path, template: str, limit: str) -> None:
    (llama / "chat_template.jinja").write_text(template)
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    [f] = only(check_folder(llama), "TOK006")
    assert f.details["limit"] == limit
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: not in this process


# -- values that crashed the tool --------------------------------------------------------------------


def test_odd_names_and_huge_numbers_end_in_well_formed_reports(llama: Path, tmp_path: Path) -> None:
    from lxml import etree

    from tests.factory import fix_config

    (llama / os.fsdecode(b"caf\xe9.txt")).write_text("x")
    (llama / "title\x1b]0;pwned\x07.py").write_text("x")  # SEC003 names it
    raw = b'{"\\ud800": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}'
    raw += b" " * (-len(raw) % 8)
    (llama / "extra.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    fix_config(llama, vocab_size=int("9" * 400), head_dim=int("7" * 400))
    out = tmp_path / "rep"
    p = _cli(["check", str(llama), "--static", "--out", str(out)])
    assert p.returncode == 1, p.stderr
    assert "\x1b" not in p.stdout and "\\x1b" in p.stdout
    doc = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    validate_report(doc)
    assert doc["summary"]["checks"]["errored"] == 0
    text = (out / "report.json").read_text()
    assert "caf\\\\xe9.txt" in text and "\\\\ud800" in text
    etree.fromstring((out / "junit.xml").read_bytes())  # well-formed XML
    assert "<html" in (out / "report.html").read_text()
    assert CliRunner().invoke(main, ["render", str(out / "report.json"), "--format", "html"]).exit_code == 0


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["rank=①"], 1),
        (['world_size="--4"'], 1),
        (["x=" + "[" * 50_000 + "]" * 50_000], 2),
    ],
)
def test_hostile_set_values(llama: Path, sets: list[str], expected: int) -> None:
    args = ["check", str(llama), "--static", "--no-out", "--format", "json"]
    base = [f"{k}={json.dumps(v)}" for k, v in MINDIE_MC.items() if not any(s.startswith(k + "=") for s in sets)]
    for s in [*base, *sets]:
        args += ["--set", s]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == expected, res.output
    if expected == 1:
        doc = json.loads(res.stdout)
        assert any(f["check_id"] == "MC001" for f in doc["findings"])


@pytest.mark.parametrize(
    "yaml_text",
    [
        "a: &a [*a]\n",
        "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
        + "".join(
            f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ],
)
def test_hostile_yaml_is_a_usage_error(llama: Path, tmp_path: Path, yaml_text: str) -> None:
    mc = tmp_path / "mc.yaml"
    mc.write_text(yaml_text)
    p = _cli(["check", str(llama), "--static", "--no-out", "-c", str(mc)], timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("size", ["9" * 400, "99999999TiB", "0", "-5GiB", "1e9"])
def test_hostile_memory_limits(llama: Path, size: str) -> None:
    res = CliRunner().invoke(main, ["check", str(llama), "--static", "--no-out", "--memory-limit", size])
    assert res.exit_code == 2 and "--memory-limit" in res.output


def test_unusable_out_locations(llama: Path, tmp_path: Path) -> None:
    existing = tmp_path / "file"
    existing.write_text("x")
    for out in ("/dev/null", "/proc", str(existing), str(llama / "inside")):
        res = CliRunner().invoke(main, ["check", str(llama), "--static", "--out", out])
        assert res.exit_code == 2, (out, res.output)
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], capture_output=True).returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        ro.chmod(0o500)
    try:
        res = CliRunner().invoke(main, ["check", str(llama), "--static", "--out", str(ro)])
        assert res.exit_code == 2 and "not writable" in res.output
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], capture_output=True)


# -- amplification -------------------------------------------------------------------------------


def _peak_kib(cmd: list[str], env: dict[str, str]) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate(timeout=300)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_maxrss, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_many_commas_give_a_bounded_report(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    p = _cli(
        ["check", str(llama), "--static", "--out", str(out)], env={"ASCEND_RT_VISIBLE_DEVICES": "0" + ",x" * 10_000}
    )
    assert p.returncode == 1
    size = sum(f.stat().st_size for f in out.iterdir())
    assert size < 2 * 2**20, size
    doc = json.loads((out / "report.json").read_text())
    env1 = [f for f in doc["findings"] if f["check_id"] == "ENV001"]
    assert len(env1) <= 41 and "more ENV001" in env1[-1]["message"]


def test_two_million_eos_ids_give_a_bounded_report(llama: Path, tmp_path: Path) -> None:
    ids = list(range(10**6, 3 * 10**6))
    (llama / "generation_config.json").write_text(json.dumps({"eos_token_id": ids}))
    out = tmp_path / "rep"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    peak, p = _peak_kib([PYTHON, "-m", "npu_preflight", "check", str(llama), "--static", "--out", str(out)], env)
    assert p.returncode == 1, p.stderr
    assert sum(f.stat().st_size for f in out.iterdir()) < 2 * 2**20
    assert peak < 1024 * 1024, f"peak RSS {peak} KiB"


# -- wrong output --------------------------------------------------------------------------------


def test_report_json_is_strict_even_for_infinite_values(llama: Path, tmp_path: Path) -> None:
    from tests.factory import fix_config

    fix_config(llama, rope_theta=float("inf"))  # config.json gets 1e400-like Infinity via a float
    raw = (llama / "config.json").read_text().replace("Infinity", "1e400")
    (llama / "config.json").write_text(raw)
    mc = tmp_path / "mc.yaml"
    mc.write_text("backend_type: atb\nworld_size: .inf\nrank: .nan\nnpu_device_id: 0\n")
    out = tmp_path / "rep"
    p = _cli(["check", str(llama), "--static", "--out", str(out), "-c", str(mc)])
    assert p.returncode == 1, p.stderr
    text = (out / "report.json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    validate_report(doc)
    assert doc["target"]["model_config"]["world_size"] == "inf"
    assert CliRunner().invoke(main, ["render", str(out / "report.json")]).exit_code == 0
    assert CliRunner().invoke(main, ["diff", str(out / "report.json"), str(out / "report.json")]).exit_code == 0


def test_conflicting_duplicate_tensor_entries_are_an_error(llama: Path) -> None:
    raw = (
        b'{"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},'
        b' "w": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}}'
    )
    raw += b" " * (-len(raw) % 8)
    (llama / "extra.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    r = check_folder(llama)
    [f] = [f for f in only(r, "WT004") if f.details["kind"] == "DuplicateKeyConflict"]
    assert f.severity is Severity.ERROR and "[0, 4)" in f.message and "[4, 8)" in f.message


def test_html_stays_under_2_mb_whatever_the_findings() -> None:
    from npu_preflight.model import CheckRecord, Finding, Location, Report, Status
    from npu_preflight.reports import RENDERERS, RenderOptions
    from tests.conftest import registry

    specs = registry().specs
    checks = tuple(CheckRecord(s.id, s.title, s.phase.value, Status.FAILED, 0.0, None) for s in specs)
    long = "x" * 1999
    findings = tuple(
        Finding(
            specs[i % len(specs)].id,
            Severity.ERROR,
            f"{i} {long}",
            Location(file=f"f{i}" + "y" * 400),
            f"fix {i} {long}",
        )
        for i in range(5000)
    )
    report = Report("0", "2026-01-01T00:00:00+00:00", 1.0, "/w", None, {}, Severity.ERROR, checks, findings)
    page = RENDERERS["html"](report, RenderOptions(docs={s.id: s.doc for s in specs}))
    assert len(page.encode()) < 2 * 2**20
    assert "more findings are not shown here" in page
