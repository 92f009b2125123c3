"""The policy a repository keeps with its code: ``[tool.npu-preflight]`` in pyproject.toml or a
``.npu-preflight.toml``, found by walking up from the working directory. Flags given on the command
line win; the file's path and what it set are shown in the report.

.. code-block:: toml

    [tool.npu-preflight]            # in .npu-preflight.toml: the same keys at the top level
    fail-on = "warning"
    ignore = ["SEC003"]
    target-device = "910B3"
    model-config = "deploy/model_config.yaml"   # relative to this file
    timeout = 900
    memory-limit = "64GiB"

    [[tool.npu-preflight.folder]]   # per-folder ignores, each with its reason
    path = "models/legacy-*"        # glob, relative to this file
    ignore = ["WT018"]
    reason = "the legacy .bin files stay until the Q3 migration"
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from npu_preflight.errors import UsageError
from npu_preflight.records import frozen

FILE_NAME = ".npu-preflight.toml"
MAX_BYTES = 1024 * 1024
#: key → (type check, description) of the values a policy file may set.
KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "fail-on": (str, '"error" or "warning"'),
    "select": ((list, str), "check ids or prefixes"),
    "ignore": ((list, str), "check ids or prefixes"),
    "target-device": (str, "a catalog device (npu-preflight devices)"),
    "model-config": (str, "a model_config file, relative to the policy file"),
    "device": (str, "auto, npu, cuda or cpu"),
    "generator": (str, "transformers, mindie or package.module:factory"),
    "timeout": ((int, float), "seconds"),
    "memory-limit": (str, 'a size such as "64GiB"'),
    "python": (str, "the deployment's interpreter"),
    "cache-dir": (str, "a directory for cached results, relative to the policy file"),
    "folder": (list, "per-folder ignores: [[folder]] path, ignore, reason"),
}


@frozen
class FolderIgnore:
    """Checks ignored for the folders a glob matches, and why."""

    pattern: str
    checks: tuple[str, ...]
    reason: str


@frozen
class PolicyFile:
    """A loaded policy file."""

    path: Path
    values: Mapping[str, Any] = field(default_factory=dict)
    folders: tuple[FolderIgnore, ...] = ()

    def ignores_for(self, weights_dir: Path) -> list[FolderIgnore]:
        """The per-folder ignores whose glob matches ``weights_dir`` (relative to the file's folder)."""
        base = self.path.parent.resolve()
        target = weights_dir.resolve()
        try:
            rel = target.relative_to(base).as_posix()
        except ValueError:
            rel = None
        out = []
        for f in self.folders:
            pats = [f.pattern.rstrip("/")]
            if rel is not None and any(fnmatch.fnmatchcase(rel, p) for p in pats):
                out.append(f)
            elif os.path.isabs(f.pattern) and fnmatch.fnmatchcase(target.as_posix(), f.pattern.rstrip("/")):
                out.append(f)
        return out

    def resolve_path(self, key: str) -> str | None:
        """A path-valued key, made absolute against the file's folder."""
        v = self.values.get(key)
        if not isinstance(v, str):
            return None
        p = Path(v)
        return str(p if p.is_absolute() else (self.path.parent / p))

    def to_dict(self) -> dict[str, Any]:
        """What the report shows."""
        return {"file": str(self.path), "settings": dict(self.values)}


def find(start: Path) -> Path | None:
    """The nearest .npu-preflight.toml, or pyproject.toml with a [tool.npu-preflight] table, at or
    above ``start``."""
    hit = _find(start)
    return hit[0] if hit is not None else None


def discover(start: Path) -> PolicyFile | None:
    """The nearest policy file at or above ``start``, read and validated (a pyproject.toml is
    parsed once: for finding its table and for reading it)."""
    hit = _find(start)
    return load(*hit) if hit is not None else None


def _find(start: Path) -> tuple[Path, dict[str, Any] | None] | None:
    for d in (start, *start.parents):
        cand = d / FILE_NAME
        if cand.is_file():
            return cand, None
        py = d / "pyproject.toml"
        if py.is_file():
            doc = _tool_table_doc(py)
            if doc is not None:
                return py, doc
    return None


def _tool_table_doc(path: Path) -> dict[str, Any] | None:
    """The parsed pyproject.toml when it has a [tool.npu-preflight] table, else None."""
    # Every pyproject.toml from the folder up to / is looked at on every run; most are not ours, and
    # a table named npu-preflight spells that name in its bytes however it is quoted, so those are
    # passed over without importing and running the TOML parser (only a key written with a \u
    # escape, ``"npu\u002dpreflight"``, would be missed).
    try:
        raw = _read_bytes(path)
    except UsageError:
        return None
    if b"npu-preflight" not in raw:
        return None
    try:
        doc = _parse_toml(path, raw)
    except UsageError:
        return None
    tool = doc.get("tool")
    return doc if isinstance(tool, dict) and "npu-preflight" in tool else None


def _read_bytes(path: Path) -> bytes:
    from npu_preflight.formats.files import FileReadError, read_regular

    try:
        return read_regular(path, MAX_BYTES)
    except FileReadError as exc:
        raise UsageError(f"{path}: {exc.message}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    return _parse_toml(path, _read_bytes(path))


def _parse_toml(path: Path, raw: bytes) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        doc: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    return doc


def _ids(path: Path, key: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise UsageError(f"{path}: {key} must be a list of check ids or prefixes")
    return tuple(i.strip().upper() for i in items if i.strip())


def load(path: Path, doc: dict[str, Any] | None = None) -> PolicyFile:
    """Read (unless ``doc`` is its parsed content) and validate a policy file; a usage error names
    the file and the key at fault."""
    if doc is None:
        doc = _read_toml(path)
    if path.name == "pyproject.toml":
        table = (doc.get("tool") or {}).get("npu-preflight")
        if not isinstance(table, dict):
            raise UsageError(f"{path}: no [tool.npu-preflight] table")
    else:
        table = doc
    values: dict[str, Any] = {}
    folders: list[FolderIgnore] = []
    for key, value in table.items():
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(KEYS)})"
            raise UsageError(f"{path}: unknown key {key!r}{hint}")
        kind, what = KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"{path}: {key} must be {what}, not {type(value).__name__}")
        if key == "fail-on" and value not in ("error", "warning"):
            raise UsageError(f'{path}: fail-on must be "error" or "warning", not {value!r}')
        if key == "device" and value not in ("auto", "npu", "cuda", "cpu"):
            raise UsageError(f"{path}: device must be auto, npu, cuda or cpu, not {value!r}")
        if key in ("select", "ignore"):
            values[key] = _ids(path, key, value)
        elif key == "folder":
            entries: list[Any] = list(value) if isinstance(value, list) else []
            for n, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise UsageError(f"{path}: folder[{n}] must be a table with path, ignore and reason")
                extra = set(entry) - {"path", "ignore", "reason"}
                if extra:
                    raise UsageError(f"{path}: folder[{n}] has unknown key(s) {sorted(extra)}")
                pat, reason = entry.get("path"), entry.get("reason")
                if not isinstance(pat, str) or not pat:
                    raise UsageError(f"{path}: folder[{n}].path must be a folder glob")
                if not isinstance(reason, str) or not reason.strip():
                    raise UsageError(f"{path}: folder[{n}] ({pat}) needs a reason: say why the checks are ignored")
                folders.append(FolderIgnore(pat, _ids(path, f"folder[{n}].ignore", entry.get("ignore", [])), reason))
        else:
            values[key] = value
    return PolicyFile(path.resolve(), values, tuple(folders))
