"""Deep integrity on real files: NaN/Inf/overflow/zeros per float dtype, manifests, LFS, Ctrl-C."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.cli import main
from npu_preflight.context import RunOptions
from npu_preflight.deep import TensorStats
from npu_preflight.model import Severity
from tests.conftest import PYTHON, REPO, check_folder, cli_env, only
from tests.factory import fix_config
from tests.props import prop

DEEP = RunOptions(static=True, deep=True)


def _bf16(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _write(folder: Path, name: str, arr: np.ndarray, dtype: str) -> None:
    """Replace model.safetensors with one holding ``name`` as ``dtype`` (bf16 via raw bits)."""
    import struct

    data = arr.tobytes()
    header = {
        "__metadata__": {"format": "pt"},
        name: {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize("dtype", ["F16", "BF16", "F32", "F64"])
def test_nan_inf_zero_in_each_float_dtype(llama: Path, dtype: str) -> None:
    base = np.linspace(-1, 1, 64).reshape(8, 8)
    base[1, 2] = np.nan
    base[3, 4] = np.inf
    base[5, 6] = -np.inf
    arr = {
        "F16": base.astype(np.float16),
        "BF16": _bf16(base),
        "F32": base.astype(np.float32),
        "F64": base.astype(np.float64),
    }[dtype]
    _write(llama, "model.layers.0.mlp.up_proj.weight", arr, dtype)
    r = check_folder(llama, options=DEEP)
    [nan] = only(r, "DATA001")
    [inf] = only(r, "DATA002")
    assert nan.details["nan"] == 1 and inf.details["inf"] == 2
    assert nan.location.tensor == "model.layers.0.mlp.up_proj.weight" and nan.location.file == "model.safetensors"
    assert nan.details["max_abs"] == pytest.approx(1.0, rel=1e-2)

    _write(
        llama,
        "model.layers.0.input_layernorm.weight",
        np.zeros(
            64, {"BF16": np.uint16}.get(dtype, {"F16": np.float16, "F32": np.float32, "F64": np.float64}.get(dtype))
        ),
        dtype,
    )
    [z] = only(check_folder(llama, options=DEEP), "DATA003")
    assert z.severity is Severity.WARNING and z.details["all_zero"]


def test_zero_bias_is_fine(llama: Path) -> None:
    _write(llama, "model.layers.0.self_attn.q_proj.bias", np.zeros(64, np.float16), "F16")
    assert not only(check_folder(llama, options=DEEP), "DATA003")


@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_fp16_overflow_when_loaded_as_fp16(llama: Path, dtype: str) -> None:
    arr = np.array([[1.0, 131072.0], [-70000.0, 2.0]])
    _write(llama, "lm_head.weight", _bf16(arr) if dtype == "BF16" else arr.astype(np.float32), dtype)
    assert not only(check_folder(llama, options=DEEP), "DATA004")  # declared bf16: fine
    fix_config(llama, torch_dtype="float16")
    [f] = only(check_folder(llama, options=DEEP), "DATA004")
    assert f.details["max_abs"] == 131072.0 and "becomes Inf" in f.message
    fix_config(llama, torch_dtype="bfloat16")
    r = check_folder(llama, options=RunOptions(static=True, deep=True, target_device="310P3"))
    assert "310P3 has no bfloat16" in only(r, "DATA004")[0].message


def test_f8_and_integer_and_unscanned(llama: Path) -> None:
    import struct

    e4m3 = np.array([0x38, 0x7F, 0x00], np.uint8)  # 1.0, NaN, 0
    header = {
        "a": {"dtype": "F8_E4M3", "shape": [3], "data_offsets": [0, 3]},
        "b": {"dtype": "I32", "shape": [2], "data_offsets": [3, 11]},
        "c": {"dtype": "F4", "shape": [4], "data_offsets": [11, 13]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (llama / "model.safetensors").write_bytes(
        struct.pack("<Q", len(raw)) + raw + e4m3.tobytes() + np.array([0, 5], np.int32).tobytes() + b"\x11\x22"
    )
    r = check_folder(llama, options=DEEP)
    assert only(r, "DATA001")[0].location.tensor == "a"
    [ns] = only(r, "DATA005")
    assert ns.details == {"dtype": "F4", "tensors": 1}
    assert r.integrity["not_scanned_dtypes"] == ["F4"]


@prop(200)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=50), st.integers(1, 17))
def test_scan_matches_numpy_for_any_split(values: list[float], step: int) -> None:
    arr = np.array(values, np.float32)
    st_ = TensorStats("t", "F32", arr.size)
    data = memoryview(arr.tobytes())
    for i in range(0, len(data), step):
        st_.feed(data[i : i + step])
    finite = arr[np.isfinite(arr)]
    assert st_.nan == int(np.isnan(arr).sum()) and st_.inf == int(np.isinf(arr).sum())
    assert st_.max_abs == (float(np.abs(finite).max()) if finite.size else 0.0)
    assert st_.nonzero == bool((arr != 0).any() or np.isnan(arr).any() or np.isinf(arr).any())


def test_report_integrity_section_hashes_match(llama: Path) -> None:
    r = check_folder(llama, options=DEEP)
    files = {f["path"]: f["sha256"] for f in r.integrity["files"]}
    assert files["model.safetensors"] == hashlib.sha256((llama / "model.safetensors").read_bytes()).hexdigest()
    assert r.integrity["tensors"] > 10


@pytest.mark.parametrize("cache", ["warm", "cold", "no RWF_NOWAIT", "no preadv"])
@pytest.mark.parametrize("advice", ["works", "refused"])
def test_prefetch_advice_never_changes_what_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, advice: str, cache: str
) -> None:
    """Files longer than the prefetch window hash the same whether the kernel takes the advice or
    refuses it (some file systems do), and whether the page cache holds them or not. A file the
    page cache holds is not advised at all; one it does not hold is advised from its start, in
    contiguous requests, as is every file where ``RWF_NOWAIT`` cannot tell (the flag refused, or no
    ``preadv`` to pass it: plain ``pread`` then)."""
    import threading

    from npu_preflight import deep

    data = os.urandom(3 * deep.PREFETCH_AHEAD + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)  # just written: in the page cache
    calls: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def fake(fd: int, offset: int, length: int, what: int) -> None:
        calls.append((offset, length))
        if advice == "refused":
            raise OSError(22, "Invalid argument")
        real(fd, offset, length, what)

    monkeypatch.setattr(deep.os, "posix_fadvise", fake)
    if cache == "cold":
        monkeypatch.setattr(deep, "_cached", lambda fd, view, pos: 0)  # nothing is in the cache
    elif cache == "no RWF_NOWAIT":
        real_preadv = os.preadv

        def no_flag(fd: int, buffers: list[memoryview], offset: int, flags: int = 0) -> int:
            if flags:
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            return real_preadv(fd, buffers, offset)

        monkeypatch.setattr(deep.os, "preadv", no_flag)
    elif cache == "no preadv":  # as the module sets itself up where os.preadv does not exist
        monkeypatch.setattr(deep, "_PREADV", False)
        monkeypatch.setattr(deep, "_NOWAIT", None)
        monkeypatch.delattr(deep.os, "preadv")
    scan = deep.scan_file(path, "blob.bin", None, threading.Event())
    assert scan.sha256 == hashlib.sha256(data).hexdigest() and scan.size == len(data) and not scan.error
    if cache == "warm":
        assert calls == [], "a cached file costs no advice"
    elif advice == "refused":
        assert len(calls) == 1  # asked once, then left alone
    else:  # contiguous requests that cover the file from its start
        assert calls[0][0] == 0 and all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(calls))
        assert calls[-1][0] + calls[-1][1] >= len(data)


def test_a_file_evicted_from_the_page_cache_is_advised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real kernel, no fake: once the file's pages are dropped, RWF_NOWAIT finds them missing
    and the scan asks for them ahead of the read."""
    import threading

    from npu_preflight import deep

    if deep._NOWAIT is None:
        pytest.skip("no RWF_NOWAIT on this platform: every read is advised")
    data = os.urandom(3 * deep.PREFETCH_AHEAD)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if deep._cached(fd, memoryview(bytearray(deep.CHUNK)), 0) == deep.CHUNK:
            pytest.skip("this file system keeps the pages (tmpfs): nothing to evict")
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    calls: list[int] = []
    real = os.posix_fadvise
    monkeypatch.setattr(deep.os, "posix_fadvise", lambda fd, off, n, what: (calls.append(off), real(fd, off, n, what)))
    scan = deep.scan_file(path, "blob.bin", None, threading.Event())
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert calls and calls[0] < deep.CHUNK, calls


@prop(150)
@given(st.data())
def test_scan_is_the_same_whatever_the_reads_return(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Reads that stop short anywhere — from the page cache or from the disk — change neither the
    digest nor any tensor's statistics: each chunk is filled before it is scanned."""
    import threading

    from safetensors.numpy import save_file

    from npu_preflight import deep
    from npu_preflight.formats.safetensors import read_header

    folder = tmp_path_factory.mktemp("reads")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    arrays = {
        "a": rng.standard_normal(data.draw(st.integers(1, 3000))).astype(np.float32),
        "b": rng.integers(-5, 5, size=data.draw(st.integers(1, 3000))).astype(np.int16),
        "c": np.array([np.nan, np.inf, -np.inf, 0.0, -2.5] * data.draw(st.integers(1, 300)), np.float16),
    }
    path = folder / "m.safetensors"
    save_file(arrays, str(path))
    header = read_header(path)
    ref = deep.scan_file(path, "m", header, threading.Event())
    cuts = data.draw(st.lists(st.integers(0, 9000), min_size=1, max_size=40))
    steps = itertools.cycle(cuts)
    real_cached, real_read = deep._cached, deep._read_at

    def short_cached(fd: int, view: memoryview, pos: int) -> int | None:
        k = min(next(steps), len(view))
        return real_cached(fd, view[:k], pos) if k else 0

    def short_read(fd: int, view: memoryview, pos: int) -> int:
        return real_read(fd, view[: max(1, min(next(steps), len(view)))], pos)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deep, "CHUNK", data.draw(st.sampled_from([7, 64, 4096, 65536])))
        mp.setattr(deep, "_cached", short_cached)
        mp.setattr(deep, "_read_at", short_read)
        got = deep.scan_file(path, "m", header, threading.Event())
    assert got.sha256 == ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [t.to_dict() for t in got.tensors] == [t.to_dict() for t in ref.tensors]


def test_cached_read_says_when_the_flag_is_not_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from npu_preflight import deep

    if deep._NOWAIT is None:
        pytest.skip("no RWF_NOWAIT on this platform")
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        view = memoryview(bytearray(16))
        assert deep._cached(fd, view, 0) == 10
        for err, want in ((errno.EOPNOTSUPP, None), (errno.EAGAIN, 0)):

            def raising(*_a: object, err: int = err) -> int:
                raise BlockingIOError(err, "x") if err == errno.EAGAIN else OSError(err, "x")

            monkeypatch.setattr(deep.os, "preadv", raising)
            assert deep._cached(fd, view, 0) == want
        monkeypatch.setattr(deep.os, "preadv", lambda *_a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
        with pytest.raises(OSError, match="I/O error"):
            deep._cached(fd, view, 0)
    finally:
        os.close(fd)


def test_manifest_catches_a_single_flipped_byte(llama: Path, tmp_path: Path) -> None:
    man = tmp_path / "m.json"
    res = CliRunner().invoke(main, ["manifest", str(llama), "-o", str(man)])
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(main, ["verify", str(llama), "--manifest", str(man)]).exit_code == 0
    p = llama / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    res = CliRunner().invoke(main, ["verify", str(llama), "--manifest", str(man)])
    assert res.exit_code == 1 and "sha256" in res.stdout and "model.safetensors" in res.stdout
    (llama / "extra.txt").write_text("x")
    assert "extra" in CliRunner().invoke(main, ["verify", str(llama), "--manifest", str(man)]).stdout


def test_manifest_refuses_to_write_into_weights(llama: Path) -> None:
    res = CliRunner().invoke(main, ["manifest", str(llama), "-o", str(llama / "m.json")])
    assert res.exit_code == 2 and not (llama / "m.json").exists()


def test_verify_against_lfs_pointers(llama: Path, tmp_path: Path) -> None:
    pointers = tmp_path / "clone"
    pointers.mkdir()
    data = (llama / "model.safetensors").read_bytes()
    (pointers / "model.safetensors").write_text(
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n"
    )
    assert CliRunner().invoke(main, ["verify", str(llama), "--manifest", str(pointers)]).exit_code == 0
    (llama / "model.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    res = CliRunner().invoke(main, ["verify", str(llama), "--manifest", str(pointers)])
    assert res.exit_code == 1 and "LFS pointer" in res.stdout


def test_hf_download_metadata(llama: Path) -> None:
    meta = llama / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    data = (llama / "model.safetensors").read_bytes()
    (meta / "model.safetensors.metadata").write_text(f"abc123\n{hashlib.sha256(data).hexdigest()}\n1700000000\n")
    cfg = (llama / "config.json").read_bytes()
    blob = hashlib.sha1(b"blob %d\x00" % len(cfg) + cfg).hexdigest()
    (meta / "config.json.metadata").write_text(f"abc123\n{blob}\n1700000000\n")
    assert not only(check_folder(llama, options=DEEP), "DATA006")
    assert CliRunner().invoke(main, ["verify", str(llama)]).exit_code == 0
    (llama / "config.json").write_bytes(cfg + b" ")
    [f] = only(check_folder(llama, options=DEEP), "DATA006")
    assert f.location.file == "config.json"


def test_verify_without_reference_is_usage_error(llama: Path) -> None:
    assert CliRunner().invoke(main, ["verify", str(llama)]).exit_code == 2


@pytest.mark.slow
def test_ctrl_c_leaves_no_partial_manifest(tmp_path: Path) -> None:
    big = tmp_path / "w"
    big.mkdir()
    with open(big / "model.safetensors", "wb") as fh:
        fh.truncate(24 * 2**30)  # sparse: reading it takes seconds, storing it nothing
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [PYTHON, "-m", "npu_preflight", "manifest", str(big), "-o", str(out / "m.json"), "--workers", "1"],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = str(big / "model.safetensors")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # interrupt only once the scan has the file open
        try:
            if any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{proc.pid}/fd")):
                break
        except OSError:
            pass
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert os.listdir(out) == [] and "Interrupted" in err
