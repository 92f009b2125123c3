"""Answering an unchanged folder from a cache: CI re-checks the same 100 GB folder on every push.

The key is the folder's fingerprint (every entry's path, size, mtime, inode, mode, and the sha256 of
small files — configs, tokenizers, indexes), the model_config, the options that change what runs,
the environment variables the checks read, the interpreter probed, and the tool's version. A hit
returns the stored report, marked as such; a report the tool could not vouch for (errored, interrupted)
is never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from npu_preflight import __version__
from npu_preflight.fingerprint import fingerprint
from npu_preflight.model import Report

#: Environment variables whose values change what the checks conclude.
ENV_KEYS = (
    "ASCEND_RT_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "NPU_MEMORY_FRACTION",
    "RESERVED_MEMORY_GB",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "RANK_TABLE_FILE",
    "MASTER_IP",
    "MASTER_PORT",
    "ASCEND_HOME_PATH",
    "ASCEND_TOOLKIT_HOME",
    "LD_LIBRARY_PATH",
    "TORCH_DEVICE_BACKEND_AUTOLOAD",
    "MINDIE_CHECK_INPUTFILES_PERMISSION",
)
#: Options that do not change the result (where it is written, how it is shown).
_NOT_IN_KEY = {"cache_dir", "workers"}


def cache_key(
    weights_dir: Path,
    model_config: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    fail_on: str,
    env: Mapping[str, str],
) -> str:
    """The sha256 naming a result."""
    marks = fingerprint(weights_dir)
    python = options.get("python")
    py_stat = None
    if isinstance(python, str):
        try:
            st = os.stat(python)
            py_stat = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            py_stat = None
    doc = {
        "tool": __version__,
        "folder": str(weights_dir),
        "entries": sorted((k, vars(m)) for k, m in marks.items()),
        "model_config": model_config,
        "options": {k: v for k, v in sorted(options.items()) if k not in _NOT_IN_KEY},
        "policy": [list(select), list(ignore), fail_on],
        "env": {k: env.get(k) for k in ENV_KEYS},
        "python": py_stat,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def lookup(cache_dir: Path, key: str) -> dict[str, Any] | None:
    """The stored report.json for ``key``, None on a miss (or an unreadable entry)."""
    from npu_preflight.formats.jsonload import JsonLoadError, load_file

    path = cache_dir / f"{key}.json"
    try:
        doc = load_file(path, max_bytes=256 * 1024 * 1024, max_depth=64).value
    except JsonLoadError:
        return None
    return doc if isinstance(doc, dict) and doc.get("schema_version") else None


def store(cache_dir: Path, key: str, report: Report) -> None:
    """Keep a trusted report under ``key`` (atomically)."""
    if not report.trusted:
        return
    from npu_preflight.output import write_atomic

    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(cache_dir / f"{key}.json", json.dumps(report.to_dict(), allow_nan=False))
