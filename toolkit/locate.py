"""Where a finding is, for tools that want a file and a line: SARIF, GitHub annotations.

A finding names a file of the weights folder and often a key (``config.json:torch_dtype``,
``tokenizer_config.json:auto_map.AutoTokenizer``, ``model_config.world_size``). The key's line is
read from the file with PyYAML's composer, which keeps every node's position (JSON is YAML here) and
never builds values — so no alias is expanded and the cost is bounded by the file's size.
Paths are made relative to the workspace (``$GITHUB_WORKSPACE``, else the enclosing git checkout,
else the working directory) so annotations attach to the repository's files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from npu_preflight.model import Finding, Report
from npu_preflight.records import frozen

MAX_LOCATE_BYTES = 4 * 1024 * 1024
_STRUCTURED = (".json", ".yaml", ".yml")


@frozen
class Place:
    """A finding's file (absolute), its path relative to the workspace (None when outside), and line."""

    path: Path
    relative: str | None
    line: int | None


def workspace_root() -> Path:
    """``$GITHUB_WORKSPACE``, else the enclosing git checkout, else the working directory."""
    ws = os.environ.get("GITHUB_WORKSPACE")
    if ws and Path(ws).is_dir():
        return Path(ws).resolve()
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / ".git").exists():
            return d
    return cwd


def relative_to_workspace(path: Path, root: Path | None = None) -> str | None:
    """``path`` relative to the workspace, posix-style; None when it lies outside."""
    root = root or workspace_root()
    try:
        return path.resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return None


@cache
def _compose(path: str, mtime_ns: int) -> Any:
    import yaml

    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_LOCATE_BYTES + 1)
        if len(raw) > MAX_LOCATE_BYTES:
            return None
        return yaml.compose(raw.decode("utf-8", "replace"), Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 - a file that does not compose simply has no line numbers
        return None


def key_line(path: Path, dotted: str) -> int | None:
    """The 1-based line of ``dotted`` (``auto_map.AutoTokenizer``) in a JSON or YAML file."""
    import yaml

    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file() or path.suffix.lower() not in _STRUCTURED:
        return None
    node = _compose(str(path), st.st_mtime_ns)
    if node is None:
        return None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == part:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def place(f: Finding, report: Report, root: Path | None = None) -> Place | None:
    """A finding's file and line, None when it names no file (a tensor alone, an environment variable)."""
    key = f.location.key or ""
    opts: Mapping[str, Any] = report.options or {}
    mc_path = opts.get("model_config_path")
    target: Path | None = None
    dotted = ""
    if key.startswith("model_config.") and isinstance(mc_path, str) and mc_path:
        target, dotted = Path(mc_path), key[len("model_config.") :]
    elif f.location.file:
        target = Path(report.weights_dir) / f.location.file
        if ":" in key and key.split(":", 1)[0] == f.location.file:
            dotted = key.split(":", 1)[1]
    elif ":" in key and key.split(":", 1)[0].endswith(_STRUCTURED):
        file, dotted = key.split(":", 1)
        target = Path(report.weights_dir) / file
    if target is None:
        return None
    line = key_line(target, dotted) if dotted else None
    return Place(target, relative_to_workspace(target, root), line)
