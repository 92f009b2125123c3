"""Many weight folders in one run: ``check DIR…`` and ``scan ROOT``.

Each folder is checked by its own ``npu-preflight check`` process (the same options, its own report
set under ``OUT/<name>/``), several at a time; the run ends with one summary table, an index page
(``OUT/index.html``, ``OUT/index.json``) and one exit code — the worst of them.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.records import frozen

MAX_FOLDERS = 10_000
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@frozen
class FolderResult:
    """One folder's outcome."""

    folder: str
    out: str
    exit_code: int
    verdict: str
    errors: int
    warnings: int
    duration_s: float
    note: str = ""


def is_weight_folder(d: Path) -> bool:
    """config.json beside weight files (or a shard index)."""
    try:
        names = {e.name for e in os.scandir(d)}
    except OSError:
        return False
    if "config.json" not in names:
        return False
    return any(n.endswith(_WEIGHT_SUFFIXES) or n.endswith(".index.json") for n in names)


def find_weight_folders(root: Path, max_depth: int = 6) -> list[Path]:
    """Weight folders at or under ``root`` (Hugging Face cache snapshots included), not descending
    into a weight folder, ``.git``, or past ``max_depth``."""
    found: list[Path] = []
    stack = [(root, 0)]
    seen: set[tuple[int, int]] = set()
    while stack and len(found) < MAX_FOLDERS:
        d, depth = stack.pop()
        try:
            st = d.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if is_weight_folder(d):
            found.append(d)
            continue
        if depth >= max_depth:
            continue
        try:
            subs = sorted(e.path for e in os.scandir(d) if e.is_dir() and e.name not in (".git", ".cache"))
        except OSError:
            continue
        stack.extend((Path(p), depth + 1) for p in reversed(subs))
    return sorted(found)


def _slug(folder: Path, used: set[str]) -> str:
    parts = folder.parts[-3:] if "snapshots" in folder.parts else folder.parts[-1:]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("._-") or "folder"
    name, n = base, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return name


def check_many(
    folders: Sequence[Path], out: Path, args: Sequence[str], jobs: int, python: str | None = None
) -> list[FolderResult]:
    """Check each folder in its own process (``jobs`` at a time) with the same ``args``."""
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    plan = [(f, out / _slug(f, used)) for f in folders]

    def one(item: tuple[Path, Path]) -> FolderResult:
        folder, dest = item
        t0 = time.monotonic()
        cmd = [python or sys.executable, "-m", "npu_preflight", "--color", "never", "check", str(folder), *args]
        cmd += ["--out", str(dest), "--format", "json"]
        env = dict(os.environ)
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        dt = time.monotonic() - t0
        try:
            doc = load_file(dest / "report.json", max_bytes=512 * 1024 * 1024, max_depth=64).value
        except JsonLoadError:
            last = (proc.stderr or "").strip().splitlines()[-1:] or ["no report written"]
            return FolderResult(str(folder), str(dest), proc.returncode, "error", 0, 0, dt, last[0][:300])
        summary = doc.get("summary") or {}
        return FolderResult(
            str(folder),
            str(dest),
            proc.returncode,
            str(doc.get("verdict")),
            int(summary.get("errors") or 0),
            int(summary.get("warnings") or 0),
            dt,
            "from cache" if (doc.get("target") or {}).get("options", {}).get("cache_hit") else "",
        )

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        results = list(pool.map(one, plan))
    write_index(out, results)
    return results


def worst_exit(results: Sequence[FolderResult]) -> int:
    """3 if any run could not vouch, else 1 if any is not ready, else 2 for a usage error, else 0."""
    codes = {r.exit_code for r in results}
    for code in (3, 1, 2):
        if code in codes:
            return code
    return 0 if codes <= {0} else max(codes)


def summary_lines(results: Sequence[FolderResult]) -> list[str]:
    """The summary table for the terminal."""
    w = max([len(r.folder) for r in results] + [6])
    lines = [f"{'folder':<{w}}  {'verdict':<9}  errors  warnings  {'time':>7}"]
    for r in results:
        lines.append(
            f"{r.folder:<{w}}  {r.verdict.upper():<9}  {r.errors:>6}  {r.warnings:>8}  {r.duration_s:>6.1f}s"
            + (f"  {r.note}" if r.note else "")
        )
    ready = sum(1 for r in results if r.verdict == "ready")
    lines.append(f"{ready} of {len(results)} folder(s) ready")
    return lines


def write_index(out: Path, results: Sequence[FolderResult]) -> None:
    """OUT/index.json and a self-contained OUT/index.html linking each folder's report."""
    from npu_preflight.output import write_atomic

    write_atomic(out / "index.json", json.dumps([r.__dict__ for r in results], indent=2) + "\n")
    rows = "".join(
        f'<tr><td><a href="{html.escape(os.path.relpath(r.out, out))}/report.html">{html.escape(r.folder)}</a></td>'
        f'<td class="{html.escape(r.verdict)}">{html.escape(r.verdict.upper())}</td><td>{r.errors}</td>'
        f"<td>{r.warnings}</td><td>{r.duration_s:.1f} s</td><td>{html.escape(r.note)}</td></tr>"
        for r in results
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>npu-preflight: '
        f"{len(results)} folders</title>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        "<style>body{font:14px system-ui,sans-serif;margin:16px}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}.ready{color:#2e7d32}"
        ".not_ready{color:#c62828}.error{color:#6a1b9a}</style></head><body>"
        f"<h1>npu-preflight: {sum(r.verdict == 'ready' for r in results)} of {len(results)} folders ready</h1>"
        "<table><thead><tr><th>folder</th><th>verdict</th><th>errors</th><th>warnings</th><th>time</th>"
        f"<th>note</th></tr></thead><tbody>{rows}</tbody></table></body></html>\n"
    )
    write_atomic(out / "index.html", page)
