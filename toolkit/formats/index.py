"""``model.safetensors.index.json``: which shard holds which tensor, and the declared total size."""

from __future__ import annotations

import math
from dataclasses import field
from pathlib import Path
from typing import Any

from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.records import frozen

INDEX_NAME = "model.safetensors.index.json"
MAX_INDEX_BYTES = 64 * 1024 * 1024


class IndexFormatError(Exception):
    """The index is not a usable ``{"metadata": ..., "weight_map": {...}}`` document."""


@frozen
class Index:
    """A parsed index. ``total_size`` is None when absent; duplicates are tensor names seen twice."""

    weight_map: dict[str, str]
    total_size: int | None
    duplicates: tuple[str, ...] = field(default=())

    @property
    def shards(self) -> list[str]:
        """Shard file names in first-mention order."""
        return list(dict.fromkeys(self.weight_map.values()))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def read_index(path: Path) -> Index:
    """Parse an index file; any fault raises :class:`IndexFormatError` naming what is wrong."""
    try:
        loaded = load_file(path, max_bytes=MAX_INDEX_BYTES, max_depth=16)
    except JsonLoadError as exc:
        raise IndexFormatError(exc.message) from None
    doc = loaded.value
    if not isinstance(doc, dict):
        raise IndexFormatError(f"top level is a JSON {type(doc).__name__}, not an object")
    wm = doc.get("weight_map")
    if not isinstance(wm, dict):
        raise IndexFormatError('"weight_map" is missing or not an object')
    bad = [k for k, v in wm.items() if not isinstance(v, str) or not v]
    if bad:
        raise IndexFormatError(f'"weight_map" entry {_short(bad[0])} does not name a shard file')
    meta = doc.get("metadata")
    total: int | None = None
    if meta is not None:
        if not isinstance(meta, dict):
            raise IndexFormatError('"metadata" is not an object')
        ts = meta.get("total_size")
        if ts is not None:
            # Some writers emit a float (1.5e10); an integral finite one is accepted. 1e400 parses
            # as inf and int(inf) raises, so finiteness is checked first.
            ok = isinstance(ts, int) or (isinstance(ts, float) and math.isfinite(ts) and ts.is_integer())
            if isinstance(ts, bool) or not ok or ts < 0:
                raise IndexFormatError(f'"metadata.total_size" is {_short(ts)}, not a non-negative integer')
            total = int(ts)
    return Index(dict(wm), total, tuple(loaded.duplicates))
