"""WT: safetensors files and the shard index — every file readable, every tensor where it says."""

from __future__ import annotations

import os
from collections.abc import Iterator

from npu_preflight.context import Context, EmptyFile, NotRegular
from npu_preflight.formats.index import INDEX_NAME, Index, IndexFormatError
from npu_preflight.formats.lfs import LfsPointer, read_pointer
from npu_preflight.formats.safetensors import Header, SafetensorsError
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check
from npu_preflight.units import fmt_bytes

_LENIENT = ("DuplicateKey", "DuplicateKeyConflict", "UnknownField", "EmptyName", "NullMetadata")
_MAX_PER_FILE = 20


@check(
    "WT001",
    "the folder holds weights",
    Severity.ERROR,
    backend="any",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/utils/weights.py (safetensors only); transformers from_pretrained",
)
def weights_present(ctx: Context) -> Iterator[Hit]:
    """A folder with no ``*.safetensors`` cannot be loaded by MindIE, whose loader reads safetensors
    only; legacy ``pytorch_model*.bin`` pickles also run code when loaded.

    Bad: a folder with config.json and tokenizer files but no weights, or only ``pytorch_model.bin``.
    Good: ``model.safetensors``, or ``model-0000N-of-0000M.safetensors`` with ``model.safetensors.index.json``.
    Fix: download the safetensors files, or convert the pickles once, in a sandbox, with
    ``safetensors.torch.save_file``.
    """
    if ctx.safetensors_files:
        return
    if ctx.pickle_files:
        yield Hit(
            f"no safetensors weights, only pickle checkpoint(s) {', '.join(ctx.pickle_files[:3])}: "
            "MindIE loads safetensors only, and loading a pickle runs code",
            "Convert the checkpoint to safetensors (in a sandbox) or download the safetensors release.",
            Location(file=ctx.pickle_files[0]),
            {"pickles": ctx.pickle_files},
        )
    else:
        yield Hit(
            "the folder holds no weight files (*.safetensors or *.bin)",
            "Point at the folder that holds the weights, or finish downloading them.",
            Location(),
        )


@check(
    "WT002",
    "every safetensors header is readable",
    Severity.ERROR,
    backend="any",
    source="safetensors format specification (8-byte header length, JSON header)",
)
def header_readable(ctx: Context) -> Iterator[Hit]:
    """The loader reads an 8-byte little-endian length, then that many bytes of JSON describing
    every tensor. A header that fails here fails the load (``HeaderTooLarge``,
    ``InvalidHeaderDeserialization``, …) — usually a truncated copy or a file that is not safetensors.

    Bad: a shard whose first 8 bytes are text, or whose JSON header is cut off.
    Good: ``safetensors.safe_open(path, "np")`` opens it.
    Fix: download or copy the file again and compare its sha256 with the published one.
    """
    for rel, h in ctx.headers.items():
        if isinstance(h, NotRegular):
            yield Hit(
                f"{rel} is {h.kind}, not a regular file: no loader can read weights from it",
                "Replace it with the real weight file.",
                Location(file=rel),
                {"kind": "NotRegular"},
            )
        if isinstance(h, SafetensorsError):
            yield Hit(
                f"{rel}: {h.kind}: {h.message}",
                "Re-download or re-copy this file and compare its sha256 with the release.",
                Location(file=rel, tensor=h.tensor),
                {"kind": h.kind},
            )


@check(
    "WT003",
    "tensor offsets and sizes are consistent",
    Severity.ERROR,
    backend="any",
    source="safetensors format specification (contiguous data_offsets)",
)
def layout_valid(ctx: Context) -> Iterator[Hit]:
    """Tensors must tile the byte buffer exactly: contiguous from byte 0, each span equal to its
    dtype × shape, the last ending at the end of the file. Anything else is a truncated,
    padded or hand-edited file and the load fails (``InvalidOffset``, ``TensorInvalidInfo``,
    ``MetadataIncompleteBuffer``) or reads the wrong bytes.

    Bad: a shard 4,096 bytes shorter than its last tensor's end (an interrupted copy).
    Good: every tensor's ``data_offsets`` span ``numel × dtype size`` and the spans tile the buffer.
    Fix: copy the file again; if it was produced by a conversion script, rerun it.
    """
    for rel, h in ctx.headers.items():
        if not isinstance(h, Header):
            continue
        problems = h.layout_problems()
        for p in problems[:_MAX_PER_FILE]:
            yield Hit(
                f"{rel}: {p.kind}: {p.message}",
                "Copy the file again (compare its sha256 with the release); rerun the conversion if it produced it.",
                Location(file=rel, tensor=p.tensor),
                {"kind": p.kind, "file_size": h.file_size, "header_len": h.header_len},
            )
        if len(problems) > _MAX_PER_FILE:
            yield Hit(
                f"{rel}: {len(problems) - _MAX_PER_FILE} more layout problems not listed",
                "Copy the file again.",
                Location(file=rel),
                {"more": len(problems) - _MAX_PER_FILE},
            )


@check(
    "WT004",
    "safetensors headers follow the specification strictly",
    Severity.WARNING,
    backend="any",
    source="safetensors format specification; the safetensors library's parser (differential tests)",
)
def header_strict(ctx: Context) -> Iterator[Hit]:
    """The safetensors library loads some headers its specification forbids: duplicate tensor
    names (the last wins, so one tensor silently disappears), unknown fields, empty names and a
    null ``__metadata__``. Other readers may reject them or read a different tensor.

    A duplicated name whose two entries differ is an error: readers that keep the first entry load
    other bytes than the safetensors library, which keeps the last.

    Bad: ``{"w": {...}, "w": {...}}`` — two entries for one name.
    Good: each tensor listed once with exactly ``dtype``, ``shape`` and ``data_offsets``.
    Fix: re-save the file with ``safetensors.torch.save_file`` from the loaded tensors.
    """
    for rel, h in ctx.headers.items():
        if not isinstance(h, Header):
            continue
        for p in h.anomalies:
            if p.kind in _LENIENT:
                yield Hit(
                    f"{rel}: {p.kind}: {p.message}",
                    "Re-save the file with safetensors.torch.save_file so that every reader sees the same tensors.",
                    Location(file=rel, tensor=p.tensor),
                    {"kind": p.kind},
                    severity=Severity.ERROR if p.kind == "DuplicateKeyConflict" else None,
                )


@check(
    "WT005",
    "safetensors metadata format is pt, tf, flax or mlx",
    Severity.WARNING,
    backend="transformers",
    source="transformers modeling_utils (metadata format pt/tf/flax/mlx)",
)
def metadata_format(ctx: Context) -> Iterator[Hit]:
    """transformers refuses a safetensors file whose ``__metadata__.format`` is present but not one
    of ``pt``, ``tf``, ``flax`` or ``mlx`` ("does not contain the valid metadata").

    Bad: ``"__metadata__": {"format": "pytorch"}``.
    Good: ``"__metadata__": {"format": "pt"}``.
    Fix: re-save with ``save_file(tensors, path, metadata={"format": "pt"})``.
    """
    for rel, h in ctx.headers.items():
        if isinstance(h, Header):
            for p in h.anomalies:
                if p.kind == "UnknownFormat":
                    yield Hit(
                        f"{rel}: {p.message}; transformers refuses to load it",
                        'Re-save the file with metadata={"format": "pt"}.',
                        Location(file=rel, key="__metadata__.format"),
                    )


@check(
    "WT006",
    "no Git LFS pointer in place of a weight file",
    Severity.ERROR,
    backend="any",
    source="Git LFS pointer file specification",
)
def lfs_pointers(ctx: Context) -> Iterator[Hit]:
    """Cloning a model repository without ``git lfs`` leaves ~130-byte text stubs where the weights
    should be. safetensors reports them as ``HeaderTooLarge`` ("version " read as a length),
    which explains nothing.

    Bad: ``model.safetensors`` of 134 bytes starting ``version https://git-lfs.github.com/spec/v1``.
    Good: the real multi-GB file whose sha256 equals the pointer's oid.
    Fix: ``git lfs install && git lfs pull`` in the clone, or download the file directly.
    """
    for rel, h in ctx.headers.items():
        if isinstance(h, LfsPointer):
            yield Hit(
                f"{rel} is a Git LFS pointer ({(h.size and fmt_bytes(h.size)) or 'unknown size'} real file, "
                f"oid sha256:{(h.oid or '?')[:12]}…), not the weights",
                "Run 'git lfs install && git lfs pull' in the clone, or download the file itself.",
                Location(file=rel),
                {"oid": h.oid, "size": h.size},
            )
    for rel in ctx.pickle_files:
        p = read_pointer(ctx.path(rel))
        if p is not None:
            yield Hit(
                f"{rel} is a Git LFS pointer, not the checkpoint",
                "Run 'git lfs pull' in the clone, or download the file itself.",
                Location(file=rel),
                {"oid": p.oid, "size": p.size},
            )


@check(
    "WT007", "no zero-byte weight file", Severity.ERROR, backend="any", source="safetensors library (HeaderTooSmall)"
)
def empty_files(ctx: Context) -> Iterator[Hit]:
    """A zero-byte weight file is a failed copy or a full disk; the loader fails with
    ``HeaderTooSmall``.

    Bad: ``model-00002-of-00004.safetensors`` of 0 bytes.
    Good: every shard its published size.
    Fix: copy the file again and check free disk space.
    """
    for rel, h in ctx.headers.items():
        if isinstance(h, EmptyFile):
            yield Hit(
                f"{rel} is empty (0 bytes)", "Copy the file again; check the disk is not full.", Location(file=rel)
            )
    for rel in ctx.pickle_files:
        e = ctx.listing.get(rel)
        if e is not None and e.is_file and e.size == 0:
            yield Hit(f"{rel} is empty (0 bytes)", "Copy the file again.", Location(file=rel))


@check(
    "WT008",
    "no partial downloads",
    Severity.ERROR,
    backend="any",
    source="huggingface_hub download (.incomplete files)",
)
def partial_downloads(ctx: Context) -> Iterator[Hit]:
    """``*.incomplete`` (huggingface_hub) and ``*.part``/``*.partial`` files are downloads that never
    finished; the file they were meant to become is missing or stale.

    Bad: ``.cache/huggingface/download/model-00003-of-00004.safetensors.<hash>.incomplete``.
    Good: no partial files.
    Fix: rerun the download (``huggingface-cli download`` resumes) until it finishes.
    """
    for e in ctx.listing.entries:
        if e.rel.endswith((".incomplete", ".part", ".partial", ".crdownload")) and not e.is_dir:
            yield Hit(
                f"{e.rel} is a partial download ({fmt_bytes(e.size)} so far)",
                "Rerun the download until it completes, then delete the partial file.",
                Location(file=e.rel),
                {"size": e.size},
            )


@check(
    "WT009",
    "safetensors headers are 8-byte aligned",
    Severity.INFO,
    backend="any",
    source="safetensors writer (header padded to 8 bytes)",
)
def header_aligned(ctx: Context) -> Iterator[Hit]:
    """The writer pads the header with spaces to a multiple of 8 so the tensor data is aligned; an
    unaligned header loads, but memory-mapped tensors are then unaligned and copied.

    Bad: an 8 + 1,001-byte header written by hand.
    Good: header lengths that are multiples of 8 (what ``save_file`` writes).
    Fix: re-save with ``safetensors.torch.save_file``.
    """
    for rel, h in ctx.headers.items():
        if isinstance(h, Header) and any(p.kind == "UnalignedHeader" for p in h.anomalies):
            yield Hit(
                f"{rel}: header length {h.header_len} is not a multiple of 8 (tensor data is unaligned)",
                "Re-save with safetensors.torch.save_file.",
                Location(file=rel),
            )


@check(
    "WT010",
    "the shard index parses",
    Severity.ERROR,
    backend="any",
    source="transformers sharded checkpoint loading (model.safetensors.index.json)",
)
def index_valid(ctx: Context) -> Iterator[Hit]:
    """``model.safetensors.index.json`` maps each tensor to its shard. If it does not parse, the
    loader fails before reading a single weight.

    Bad: ``{"weight_map": ["model-00001-of-00002.safetensors"]}``.
    Good: ``{"metadata": {"total_size": 123}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}``.
    Fix: restore the index from the release, or regenerate it from the shards' headers.
    """
    idx = ctx.index_load
    if isinstance(idx, IndexFormatError):
        yield Hit(
            f"{INDEX_NAME} is not a valid index: {idx}",
            "Restore the index from the model's release or regenerate it from the shard headers.",
            Location(file=INDEX_NAME),
        )
    elif isinstance(idx, Index):
        for name in idx.duplicates:
            yield Hit(
                f"{INDEX_NAME}: tensor {name} is listed twice in weight_map (the last entry wins)",
                "Remove the duplicate entry.",
                Location(file=INDEX_NAME, tensor=name, key=f"weight_map.{name}"),
                severity=Severity.WARNING,
            )


def _index(ctx: Context) -> Index | None:
    idx = ctx.index_load
    return idx if isinstance(idx, Index) else None


def _escapes(ctx: Context, shard: str) -> bool:
    """Whether the index *names* a file outside the folder: an absolute path, a ``..`` that climbs
    out, or a sub-folder that is a link elsewhere. A bare file name never escapes by its name — a
    shard that is itself a symlink (every HF cache snapshot: ``../../blobs/<sha>``) is SEC004's
    finding — so the common case costs no ``resolve()`` (two per shard made 1,000 shards slow)."""
    if os.path.isabs(shard):
        return True
    parts = os.path.normpath(shard).split(os.sep)
    if parts[0] == "..":
        return True
    if len(parts) == 1:
        return False
    root = ctx.weights_dir.resolve()
    parent = (root / os.path.dirname(shard)).resolve()
    return root != parent and root not in parent.parents


@check(
    "WT011",
    "every shard the index lists exists",
    Severity.ERROR,
    backend="any",
    source="transformers sharded checkpoint loading; MindIE weights.py (reads the shards present)",
)
def index_shards_exist(ctx: Context) -> Iterator[Hit]:
    """transformers does not check that the shards exist; a missing one fails later, mid-load, as
    ``FileNotFoundError`` — or, in servers that skip missing files, leaves random weights.

    Bad: the index names ``model-00004-of-00004.safetensors`` and the folder has three shards.
    Good: every shard named in weight_map is present.
    Fix: download the missing shard(s).
    """
    idx = _index(ctx)
    if idx is None:
        return
    for shard in idx.shards:
        if _escapes(ctx, shard):
            continue
        if not ctx.path(shard).is_file():
            n = sum(1 for v in idx.weight_map.values() if v == shard)
            yield Hit(
                f"shard {shard} is listed in {INDEX_NAME} for {n} tensor(s) but is missing",
                f"Download {shard} into the folder.",
                Location(file=shard, key=f"{INDEX_NAME}:weight_map"),
                {"tensors": n},
            )


@check(
    "WT012",
    "every indexed tensor is in the shard the index names",
    Severity.ERROR,
    backend="any",
    source="transformers sharded checkpoint loading (weight_map)",
)
def index_tensors_in_shards(ctx: Context) -> Iterator[Hit]:
    """Loaders open the shard the index names and ask it for the tensor; if the shard lacks it, the
    load fails with a missing key — or the weight stays randomly initialised.

    Bad: ``"lm_head.weight": "model-00001-of-00002.safetensors"`` while lm_head is in shard 2.
    Good: the index generated from the shards themselves.
    Fix: regenerate the index from the shard headers.
    """
    idx = _index(ctx)
    if idx is None:
        return
    for name, shard in idx.weight_map.items():
        h = ctx.headers.get(shard)
        if isinstance(h, Header) and name not in h.tensors:
            elsewhere = [r for r, o in ctx.headers.items() if isinstance(o, Header) and name in o.tensors]
            yield Hit(
                f"{INDEX_NAME} maps {name} to {shard}, which does not contain it"
                + (f" (it is in {elsewhere[0]})" if elsewhere else " (no shard contains it)"),
                "Regenerate the index from the shard headers." if elsewhere else "Find the missing tensor's shard.",
                Location(file=shard, tensor=name, key=f"{INDEX_NAME}:weight_map"),
                {"found_in": elsewhere},
            )


@check(
    "WT013",
    "every tensor in a shard is in the index",
    Severity.ERROR,
    backend="any",
    source="transformers (loads by index); MindIE weights.py (scans every shard)",
)
def shard_tensors_indexed(ctx: Context) -> Iterator[Hit]:
    """A tensor stored in a shard but absent from the index is never loaded by transformers, while
    MindIE, which scans the shards, may load it — two runtimes, two models.

    Bad: shard 2 holds ``lm_head.weight`` but weight_map has no entry for it.
    Good: the index lists exactly the tensors of its shards.
    Fix: regenerate the index from the shard headers.
    """
    idx = _index(ctx)
    if idx is None:
        return
    for shard in idx.shards:
        h = ctx.headers.get(shard)
        if not isinstance(h, Header):
            continue
        missing = [t for t in h.tensors if t not in idx.weight_map]
        for t in missing[:_MAX_PER_FILE]:
            yield Hit(
                f"{shard} holds tensor {t} but {INDEX_NAME} does not list it",
                "Regenerate the index from the shard headers.",
                Location(file=shard, tensor=t, key=f"{INDEX_NAME}:weight_map"),
            )


@check(
    "WT014",
    "no tensor stored in two shards",
    Severity.ERROR,
    backend="any",
    source="transformers and MindIE weight maps (one name, one tensor)",
)
def tensor_in_two_shards(ctx: Context) -> Iterator[Hit]:
    """The same tensor name in two loaded files means one copy silently wins, depending on the
    loader and the order it reads files in.

    Bad: ``model.embed_tokens.weight`` in shard 1 and shard 3.
    Good: every tensor name in exactly one file.
    Fix: remove the stale copy (often a leftover from an earlier conversion).
    """
    seen: dict[str, str] = {}
    for rel in ctx.loaded_files:
        h = ctx.headers.get(rel)
        if not isinstance(h, Header):
            continue
        for name in h.tensors:
            if name in seen:
                yield Hit(
                    f"tensor {name} is stored in both {seen[name]} and {rel}",
                    "Delete the stale copy; regenerate the index.",
                    Location(file=rel, tensor=name),
                    {"files": [seen[name], rel]},
                )
            else:
                seen[name] = rel


@check(
    "WT015",
    "index total_size matches the shards",
    Severity.WARNING,
    backend="any",
    source="model.safetensors.index.json metadata.total_size (transformers save_pretrained)",
)
def index_total_size(ctx: Context) -> Iterator[Hit]:
    """``metadata.total_size`` is the sum of tensor bytes (some tools sum file sizes; both are
    accepted). A mismatch means the index belongs to another version of the weights.

    Bad: ``total_size`` 14,483,464,192 over shards holding 13,476,839,424 bytes of tensors.
    Good: the value save_pretrained wrote for these shards.
    Fix: regenerate the index from the shards.
    """
    idx = _index(ctx)
    if idx is None or idx.total_size is None:
        return
    headers = [ctx.headers.get(s) for s in idx.shards]
    if not all(isinstance(h, Header) for h in headers):
        return
    tensor_bytes = sum(t.nbytes for h in headers if isinstance(h, Header) for t in h.tensors.values())
    file_bytes = sum(h.file_size for h in headers if isinstance(h, Header))
    if idx.total_size not in (tensor_bytes, file_bytes):
        yield Hit(
            f"{INDEX_NAME} total_size is {idx.total_size:,} but the shards hold {tensor_bytes:,} bytes "
            f"of tensors ({file_bytes:,} bytes of files)",
            "Regenerate the index; a wrong total usually means it belongs to another version of the weights.",
            Location(file=INDEX_NAME, key="metadata.total_size"),
            {"declared": idx.total_size, "tensor_bytes": tensor_bytes, "file_bytes": file_bytes},
        )


@check(
    "WT016",
    "index paths stay inside the folder",
    Severity.ERROR,
    backend="any",
    source="transformers sharded loading (joins weight_map paths to the folder)",
)
def index_paths_contained(ctx: Context) -> Iterator[Hit]:
    """A weight_map entry such as ``../other/model.safetensors`` or an absolute path makes the loader
    read files outside the weight folder — another model's weights, or anything on the host.

    Bad: ``"lm_head.weight": "/etc/passwd"``.
    Good: bare shard file names.
    Fix: use file names relative to the folder.
    """
    idx = _index(ctx)
    if idx is None:
        return
    for shard in idx.shards:
        if _escapes(ctx, shard):
            yield Hit(
                f"{INDEX_NAME} names shard {shard!r}, which is outside the weights folder",
                "Use shard file names relative to the folder.",
                Location(file=INDEX_NAME, key="weight_map"),
                {"shard": shard},
            )


@check(
    "WT017",
    "no stray weight files beside the indexed set",
    Severity.ERROR,
    backend="any",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/utils/weights.py (reads every *.safetensors); transformers file precedence",
)
def stray_weight_files(ctx: Context) -> Iterator[Hit]:
    """MindIE's loader reads every ``*.safetensors`` in the folder, and transformers prefers
    ``model.safetensors`` over an index. A leftover ``consolidated.safetensors`` or a
    ``model.safetensors`` next to sharded weights is loaded twice, loaded instead, or doubles memory.

    Bad: ``consolidated.safetensors`` beside ``model-0000N-of-0000M.safetensors``.
    Good: exactly the files the index lists.
    Fix: move the stray file out of the folder.
    """
    idx = _index(ctx)
    if idx is not None:
        listed = set(idx.shards)
        for rel in ctx.safetensors_files:
            if rel not in listed:
                yield Hit(
                    f"{rel} is not in {INDEX_NAME} but sits beside the indexed shards; loaders that scan "
                    "the folder (MindIE) or prefer model.safetensors (transformers) will read it",
                    f"Move {rel} out of the weights folder.",
                    Location(file=rel),
                )
    elif len(ctx.safetensors_files) > 1:
        for rel in ctx.safetensors_files:
            if rel.startswith("consolidated"):
                yield Hit(
                    f"{rel} sits beside other safetensors files without an index; it will be loaded with them",
                    f"Move {rel} out of the weights folder.",
                    Location(file=rel),
                )


@check(
    "WT018",
    "one weight format, not safetensors and pickles side by side",
    Severity.WARNING,
    backend="any",
    source="transformers file precedence (safetensors before pytorch_model.bin)",
)
def mixed_formats(ctx: Context) -> Iterator[Hit]:
    """A folder with both safetensors and ``pytorch_model*.bin`` doubles the download, and a loader
    that falls back to the pickles runs their code.

    Bad: ``model.safetensors`` and ``pytorch_model.bin`` together.
    Good: safetensors only.
    Fix: delete the ``.bin`` files once the safetensors load.
    """
    if ctx.safetensors_files and ctx.pickle_files:
        size = sum(e.size for e in ctx.listing.entries if e.rel in ctx.pickle_files)
        yield Hit(
            f"both safetensors and pickle weights are present ({', '.join(ctx.pickle_files[:3])}, {fmt_bytes(size)})",
            "Delete the pickle checkpoint(s) once the safetensors weights load.",
            Location(file=ctx.pickle_files[0]),
            {"pickles": ctx.pickle_files},
        )


@check(
    "WT019",
    "the whole folder was listed",
    Severity.ERROR,
    backend="preflight",
    source="npu_preflight listing cap (MAX_LISTING)",
)
def listing_complete(ctx: Context) -> Iterator[Hit]:
    """The tool lists at most 100,000 entries (``.git`` is never descended). A folder with more was
    not fully checked — a pickle or a stray weight file past the cut would go unseen — so the run
    cannot vouch for it.

    Bad: a weights folder that also holds a dataset of 500,000 images.
    Good: the weights, configs and tokenizer files only.
    Fix: move everything that is not part of the model out of the folder.
    """
    from npu_preflight.context import MAX_LISTING

    listing = ctx.listing
    if listing.truncated:
        yield Hit(
            f"the folder holds more than {MAX_LISTING:,} entries; listing stopped there, so files past the cut "
            "(pickles, stray weight files) were not checked",
            "Move everything that is not part of the model out of the weights folder, then check again.",
            Location(file="."),
            {"limit": MAX_LISTING},
        )
