"""SEC checks. Every payload would create a marker file if it were ever executed."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from npu_preflight.model import Severity
from tests.conftest import check_folder, ids, only, problems


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class NestedLoads:
    def __init__(self, inner: bytes) -> None:
        self.inner = inner

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pickle.loads, (self.inner,))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "EXECUTED"


def torch_save(obj: object, path: Path) -> None:
    import torch

    torch.save(obj, str(path))


def _assert_caught(folder: Path, marker: Path, glob_part: str = "system") -> list:  # type: ignore[type-arg]
    r = check_folder(folder)
    fs = only(r, "SEC001")
    errors = [f for f in fs if f.severity is Severity.ERROR]
    assert errors, [f.message for f in fs]
    assert any(glob_part in f.details.get("global", "") for f in errors), [f.message for f in errors]
    assert not marker.exists()
    return fs


def test_clean_torch_checkpoint_passes(llama: Path, marker: Path) -> None:
    import torch

    torch_save({"w": torch.zeros(3, dtype=torch.bfloat16), "b": torch.ones(2)}, llama / "pytorch_model.bin")
    r = check_folder(llama)
    assert [f for f in only(r, "SEC001")] == []


def test_raw_pickle_payload(llama: Path, marker: Path) -> None:
    (llama / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    [f, *_] = _assert_caught(llama, marker)
    assert f.location.file == "pytorch_model.bin" and "posix.system" in f.message


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_every_protocol(llama: Path, marker: Path, protocol: int) -> None:
    (llama / "evil.pkl").write_bytes(pickle.dumps({"x": Payload(marker)}, protocol=protocol))
    _assert_caught(llama, marker)


def test_torch_zip_payload(llama: Path, marker: Path) -> None:
    torch_save({"state": Payload(marker)}, llama / "model.pt")
    [f, *_] = _assert_caught(llama, marker)
    assert f.location.key.endswith("data.pkl")


def test_pickle_under_other_name_by_content(llama: Path, marker: Path) -> None:
    (llama / "weights.dat").write_bytes(pickle.dumps(Payload(marker)))
    _assert_caught(llama, marker)


def _zip_with(member: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        zf.writestr("archive/version", "3\n")
        zf.writestr(member, data)
    return buf.getvalue()


def test_pickle_member_with_odd_extension(llama: Path, marker: Path) -> None:
    (llama / "pytorch_model.bin").write_bytes(_zip_with("archive/data.bin", pickle.dumps(Payload(marker))))
    fs = _assert_caught(llama, marker)
    assert any("non-.pkl name" in f.message for f in fs)


def test_tampered_encryption_flag(llama: Path, marker: Path) -> None:
    blob = bytearray(_zip_with("archive/data.pkl", pickle.dumps(Payload(marker))))
    # set bit 0 (encrypted) in every local header and central directory entry
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = blob.find(sig)
        while i != -1:
            blob[i + off] |= 1
            i = blob.find(sig, i + 4)
    (llama / "pytorch_model.bin").write_bytes(bytes(blob))
    with pytest.raises(RuntimeError):  # the stdlib refuses it ...
        zipfile.ZipFile(io.BytesIO(bytes(blob))).read("archive/data.pkl")
    _assert_caught(llama, marker)  # ... and the scanner still reads it


def test_tampered_crc(llama: Path, marker: Path) -> None:
    blob = bytearray(_zip_with("archive/data.pkl", pickle.dumps(Payload(marker))))
    for sig, off in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        i = blob.find(sig)
        while i != -1:
            blob[i + off : i + off + 4] = b"\xde\xad\xbe\xef"
            i = blob.find(sig, i + 4)
    (llama / "pytorch_model.bin").write_bytes(bytes(blob))
    _assert_caught(llama, marker)


def test_deflated_member(llama: Path, marker: Path) -> None:
    (llama / "pytorch_model.bin").write_bytes(
        _zip_with("archive/data.pkl", pickle.dumps(Payload(marker)), zipfile.ZIP_DEFLATED)
    )
    _assert_caught(llama, marker)


def test_nested_archive(llama: Path, marker: Path) -> None:
    inner = _zip_with("archive/data.pkl", pickle.dumps(Payload(marker)))
    (llama / "pytorch_model.bin").write_bytes(_zip_with("archive/extra.zip", inner))
    fs = _assert_caught(llama, marker)
    assert any("nested archive" in f.message for f in fs)


def test_member_hidden_from_central_directory(llama: Path, marker: Path) -> None:
    payload = pickle.dumps(Payload(marker))
    clean = _zip_with("archive/data.pkl", pickle.dumps({"a": 1}))
    # prepend a local-header-only member before the real archive
    name = b"archive/hidden.pkl"
    local = (
        struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            0,
            0,
            0,
            0,
            zlib.crc32(payload),
            len(payload),
            len(payload),
            len(name),
            0,
        )
        + name
        + payload
    )
    (llama / "pytorch_model.bin").write_bytes(local + clean)
    _assert_caught(llama, marker)


def test_broken_after_payload(llama: Path, marker: Path) -> None:
    data = pickle.dumps(Payload(marker), protocol=2)
    broken = data[:-2] + b"\xff\xfe\xfd"  # drop REDUCE/STOP, append junk opcodes
    (llama / "pytorch_model.bin").write_bytes(broken)
    fs = _assert_caught(llama, marker)
    assert any("cannot be shown safe" in f.message and f.severity is Severity.ERROR for f in fs)


def test_nested_pickle_loads(llama: Path, marker: Path) -> None:
    (llama / "pytorch_model.bin").write_bytes(pickle.dumps(NestedLoads(pickle.dumps(Payload(marker)))))
    _assert_caught(llama, marker, "loads")


def test_builtins_eval_via_stack_global(llama: Path, marker: Path) -> None:
    data = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x05'x'+1\x94\x85\x94R\x94."
    (llama / "pytorch_model.bin").write_bytes(data)
    _assert_caught(llama, marker, "builtins.eval")


def test_auto_map_without_trust(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="baichuan", dtype="float16")
    fs = only(check_folder(m), "SEC002")
    assert fs and all(f.severity is Severity.ERROR for f in fs)
    assert fs[0].location.key.startswith("config.json:auto_map.")


def test_auto_map_with_trust_is_warning(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="baichuan", dtype="float16")
    fs = only(check_folder(m, {"trust_remote_code": True}), "SEC002")
    assert fs and all(f.severity is Severity.WARNING for f in fs)


def test_cross_repo_auto_map_always_error(llama: Path) -> None:
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    tc["auto_map"] = {"AutoTokenizer": ["someone/other--tokenization.Tok", None]}
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    [f] = only(check_folder(llama, {"trust_remote_code": True}), "SEC002")
    assert f.severity is Severity.ERROR and f.location.file == "tokenizer_config.json"


def test_python_files(llama: Path) -> None:
    (llama / "modeling_x.py").write_text("import os\n")
    [f] = only(check_folder(llama), "SEC003")
    assert f.location.file == "modeling_x.py"


def test_symlink_out_of_folder(llama: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    os.symlink(outside, llama / "special_tokens_map.json")
    [f] = only(check_folder(llama), "SEC004")
    assert f.severity is Severity.ERROR and f.location.file == "special_tokens_map.json"


def test_hf_cache_layout_is_warning(llama: Path, tmp_path: Path) -> None:
    cache = tmp_path / "models--org--m"
    snap = cache / "snapshots" / "abc123"
    blobs = cache / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for f in llama.iterdir():
        (blobs / f.name).write_bytes(f.read_bytes())
        os.symlink(Path("../../blobs") / f.name, snap / f.name)
    r = check_folder(snap)
    fs = only(r, "SEC004")
    assert fs and all(f.severity is Severity.WARNING for f in fs)
    assert problems(r) == ["SEC004"] * len(fs)


def test_sharded_hf_cache_snapshot_is_not_outside_the_folder(sharded: Path, tmp_path: Path) -> None:
    """Shards in an HF cache snapshot are symlinks into ../../blobs: the index still names them
    by bare file name, so WT016 (a name outside the folder) must not fire and WT011 must see them."""
    cache = tmp_path / "models--org--s"
    snap = cache / "snapshots" / "abc123"
    blobs = cache / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for f in sharded.iterdir():
        (blobs / f.name).write_bytes(f.read_bytes())
        os.symlink(Path("../../blobs") / f.name, snap / f.name)
    r = check_folder(snap)
    assert set(problems(r)) == {"SEC004"}
    sorted(blobs.glob("model-*.safetensors"))[-1].unlink()
    r = check_folder(snap)
    assert "WT011" in problems(r)


def test_world_writable(llama: Path) -> None:
    (llama / "model.safetensors").chmod(0o666)
    [f] = only(check_folder(llama), "SEC005")
    assert f.location.file == "model.safetensors" and f.severity is Severity.ERROR


def test_group_writable_quotes_mindie(llama: Path) -> None:
    (llama / "config.json").chmod(0o664)
    [f] = [f for f in only(check_folder(llama), "SEC006") if f.severity is Severity.WARNING]
    assert "should not be writable by group users" in f.message


def test_mindie_checks_switched_off(llama: Path) -> None:
    (llama / "config.json").chmod(0o664)
    r = check_folder(llama, env={"MINDIE_CHECK_INPUTFILES_PERMISSION": "0"})
    assert "SEC006" not in ids(r)


def test_unreadable_file_as_another_user(llama: Path, tmp_path: Path) -> None:
    """Run the check as an unprivileged user: root cannot be denied a read."""
    if os.geteuid() != 0:
        (llama / "tokenizer.json").chmod(0)
        assert "SEC005" in ids(check_folder(llama, select="SEC005"))
        return
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    for p in [llama, *llama.parents]:
        if p != Path("/"):
            os.chmod(p, os.stat(p).st_mode | 0o005)
    for f in llama.iterdir():
        f.chmod(0o644)
    (llama / "tokenizer.json").chmod(0o600)
    check_folder(llama, select="SEC005")  # import everything while root: nobody cannot read the interpreter's tree
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        r = check_folder(llama, select="SEC005")
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
    assert [c.status.value for c in r.checks if c.id == "SEC005"] == ["failed"], [c.reason for c in r.checks]
    [f] = only(r, "SEC005")
    assert f.location.file == "tokenizer.json" and "cannot be read" in f.message
