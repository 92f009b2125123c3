"""WT checks on real toy folders, each broken in one precise way."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from npu_preflight.formats.index import INDEX_NAME
from npu_preflight.model import Severity
from tests.conftest import check_folder, ids, only, problems


def test_clean_single_and_sharded(llama: Path, sharded: Path) -> None:
    assert problems(check_folder(llama)) == []
    assert problems(check_folder(sharded)) == []
    assert len(list(sharded.glob("*.safetensors"))) > 2


def test_no_weights(llama: Path) -> None:
    (llama / "model.safetensors").unlink()
    [f] = only(check_folder(llama), "WT001")
    assert "no weight files" in f.message


def test_only_pickles(llama: Path) -> None:
    (llama / "model.safetensors").unlink()
    (llama / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    [f] = only(check_folder(llama), "WT001")
    assert f.location.file == "pytorch_model.bin"


def test_truncated_shard_names_tensor_and_bytes(sharded: Path) -> None:
    shard = sorted(sharded.glob("model-*.safetensors"))[1]
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size - 4096)
    r = check_folder(sharded)
    [f] = only(r, "WT003")
    assert f.location.file == shard.name and f.location.tensor
    assert "truncated by 4,096 bytes" in f.message
    assert f.details["kind"] == "MetadataIncompleteBuffer"


def test_header_garbage(llama: Path) -> None:
    (llama / "model.safetensors").write_bytes(os.urandom(4096))
    [f] = only(check_folder(llama), "WT002")
    assert f.location.file == "model.safetensors"
    assert f.details["kind"] in {
        "HeaderTooLarge",
        "InvalidHeaderLength",
        "InvalidHeader",
        "InvalidHeaderDeserialization",
    }


def test_header_length_2_pow_63(llama: Path) -> None:
    (llama / "model.safetensors").write_bytes(struct.pack("<Q", 2**63) + b"{}" * 10)
    [f] = only(check_folder(llama), "WT002")
    assert f.details["kind"] == "HeaderTooLarge"


def test_header_length_past_eof(llama: Path) -> None:
    (llama / "model.safetensors").write_bytes(struct.pack("<Q", 5000) + b"{}")
    [f] = only(check_folder(llama), "WT002")
    assert f.details["kind"] == "InvalidHeaderLength"


def _rewrite_header(path: Path, header_bytes: bytes) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    body = data[8 + n :]
    header_bytes += b" " * (-len(header_bytes) % 8)
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + body)


def test_duplicate_key_and_unknown_field(llama: Path) -> None:
    p = llama / "model.safetensors"
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = data[8 : 8 + n].decode().rstrip()
    doc = json.loads(hdr)
    name, other = [k for k in doc if k != "__metadata__"][:2]
    doc[other] = {**doc[other], "crc": 1}
    text = json.dumps(doc)
    text = text[:-1] + f', "{name}": ' + json.dumps(doc[name]) + "}"
    _rewrite_header(p, text.encode())
    kinds = {f.details["kind"] for f in only(check_folder(llama), "WT004")}
    assert kinds == {"DuplicateKey", "UnknownField"}


def test_unknown_format(llama: Path) -> None:
    p = llama / "model.safetensors"
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    doc = json.loads(data[8 : 8 + n])
    doc["__metadata__"] = {"format": "pytorch"}
    _rewrite_header(p, json.dumps(doc).encode())
    [f] = only(check_folder(llama), "WT005")
    assert f.location.key == "__metadata__.format"


def test_lfs_pointer(sharded: Path) -> None:
    shard = sorted(sharded.glob("model-*.safetensors"))[0]
    shard.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 4976698672\n")
    r = check_folder(sharded)
    [f] = only(r, "WT006")
    assert f.location.file == shard.name and f.details["size"] == 4976698672
    assert "WT002" not in ids(r)


def test_zero_byte_file(sharded: Path) -> None:
    shard = sorted(sharded.glob("model-*.safetensors"))[2]
    shard.write_bytes(b"")
    [f] = only(check_folder(sharded), "WT007")
    assert f.location.file == shard.name


def test_incomplete_download(llama: Path) -> None:
    d = llama / ".cache" / "huggingface" / "download"
    d.mkdir(parents=True)
    (d / "model.safetensors.abc123.incomplete").write_bytes(b"x" * 10)
    [f] = only(check_folder(llama), "WT008")
    assert f.location.file == ".cache/huggingface/download/model.safetensors.abc123.incomplete"


def test_unaligned_header_is_info(llama: Path) -> None:
    p = llama / "model.safetensors"
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    raw = data[8 : 8 + n].rstrip(b" ")
    if len(raw) % 8 == 0:
        raw += b" "
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    r = check_folder(llama)
    assert [f.severity for f in only(r, "WT009")] == [Severity.INFO]
    assert problems(r) == []


def test_index_not_json(sharded: Path) -> None:
    (sharded / INDEX_NAME).write_text("{")
    [f] = only(check_folder(sharded), "WT010")
    assert f.location.file == INDEX_NAME


def test_index_weight_map_not_object(sharded: Path) -> None:
    (sharded / INDEX_NAME).write_text('{"weight_map": []}')
    assert "WT010" in ids(check_folder(sharded))


def _index(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / INDEX_NAME).read_text())


def test_missing_shard(sharded: Path) -> None:
    shard = sorted(sharded.glob("model-*.safetensors"))[-1]
    shard.unlink()
    r = check_folder(sharded)
    [f] = only(r, "WT011")
    assert f.location.file == shard.name


def test_tensor_mapped_to_wrong_shard(sharded: Path) -> None:
    idx = _index(sharded)
    shards = sorted(set(idx["weight_map"].values()))
    name = next(k for k, v in idx["weight_map"].items() if v == shards[-1])
    idx["weight_map"][name] = shards[0]
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    [f] = only(check_folder(sharded), "WT012")
    assert f.location.tensor == name and f.location.file == shards[0]
    assert shards[-1] in f.message


def test_tensor_in_shard_not_in_index(sharded: Path) -> None:
    idx = _index(sharded)
    counts: dict[str, int] = {}
    for shard in idx["weight_map"].values():
        counts[shard] = counts.get(shard, 0) + 1
    name = next(k for k, v in sorted(idx["weight_map"].items()) if counts[v] > 1)
    del idx["weight_map"][name]
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    [f] = only(check_folder(sharded), "WT013")
    assert f.location.tensor == name


def test_tensor_in_two_shards(sharded: Path) -> None:
    idx = _index(sharded)
    shards = sorted(set(idx["weight_map"].values()))
    save_file(
        {"model.norm.weight": np.ones(64, np.float16)},
        str(sharded / "model-extra.safetensors"),
        metadata={"format": "pt"},
    )
    idx["weight_map"]["model.norm.weight"] = "model-extra.safetensors"
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    r = check_folder(sharded)
    fs = only(r, "WT014")
    assert fs and fs[0].location.tensor == "model.norm.weight"
    assert shards  # the original shard still holds it too


def test_total_size_wrong_and_both_conventions(sharded: Path) -> None:
    idx = _index(sharded)
    assert "WT015" not in ids(check_folder(sharded))
    files = sum(p.stat().st_size for p in sharded.glob("model-*.safetensors"))
    idx["metadata"]["total_size"] = files
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    assert "WT015" not in ids(check_folder(sharded))
    idx["metadata"]["total_size"] = files + 12345
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    [f] = only(check_folder(sharded), "WT015")
    assert f.location.key == "metadata.total_size"


def test_index_path_leaves_folder(sharded: Path, tmp_path: Path) -> None:
    idx = _index(sharded)
    name = sorted(idx["weight_map"])[0]
    idx["weight_map"][name] = "../elsewhere/model.safetensors"
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    r = check_folder(sharded)
    [f] = only(r, "WT016")
    assert "../elsewhere/model.safetensors" in f.message
    assert "WT011" not in ids(r)


@pytest.mark.parametrize("how", ["absolute", "climb", "linked-subfolder"])
def test_index_names_outside_the_folder_every_way(sharded: Path, tmp_path: Path, how: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shard = sorted(sharded.glob("model-*.safetensors"))[0].name
    if how == "absolute":
        target = str(outside / shard)
    elif how == "climb":
        target = f"sub/../../outside/{shard}"
    else:
        os.symlink(outside, sharded / "sub")
        target = f"sub/{shard}"
    idx = _index(sharded)
    for k, v in idx["weight_map"].items():
        if v == shard:
            idx["weight_map"][k] = target
    (sharded / INDEX_NAME).write_text(json.dumps(idx))
    [f] = only(check_folder(sharded), "WT016")
    assert target in f.message


def test_stray_consolidated_beside_shards(sharded: Path) -> None:
    shutil.copy(sorted(sharded.glob("model-*.safetensors"))[0], sharded / "consolidated.safetensors")
    [f] = only(check_folder(sharded), "WT017")
    assert f.location.file == "consolidated.safetensors" and f.severity is Severity.ERROR


def test_model_safetensors_beside_index(sharded: Path, llama: Path) -> None:
    shutil.copy(llama / "model.safetensors", sharded / "model.safetensors")
    assert [f.location.file for f in only(check_folder(sharded), "WT017")] == ["model.safetensors"]


def test_safetensors_and_bin(llama: Path) -> None:
    (llama / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    [f] = only(check_folder(llama), "WT018")
    assert f.location.file == "pytorch_model.bin"


def test_unreadable_file_is_a_finding(llama: Path) -> None:
    if os.geteuid() == 0:
        # root reads anything: simulate with a dangling link instead
        (llama / "model.safetensors").unlink()
        os.symlink("/nonexistent/model.safetensors", llama / "model.safetensors")
        assert "WT001" in ids(check_folder(llama))
    else:
        (llama / "model.safetensors").chmod(0)
        assert "WT002" in ids(check_folder(llama))
