"""The static check of an earlier revision against the current code, in alternating rounds, on the
70B-shaped folder with and without the 150k-token tokenizer.json, with the numpy reader beside them.

The earlier revision is checked out (``git worktree``) under bench/out/rev-<REV>. Both sides are
laid out as the installed namespace by a tree of links made here the same way (the strict editable
install lays out only this checkout) and byte-compiled; both run ``python -m npu_preflight`` with
their own tree first on ``sys.path``. So this compares the code
only: the import hook that the default editable install adds to every interpreter start (which the
revisions before ff32b00 were installed with) is the same for both — absent — and is measured apart
(bench/RESULTS.md). ``python -m bench.ab_revision REV [ROUNDS]``; not part of ``make bench``."""

from __future__ import annotations

import compileall
import subprocess
import sys
from pathlib import Path

from bench.common import OUT, PY, REPO, llama70b, median_runs
from bench.static_bench import PEER_A

#: Where each package of the namespace lives in the repository (pyproject.toml's package-dir).
PACKAGE_DIRS = {"": "toolkit", "checks": "checks", "reports": "reports", "schemas": "schemas"}


def link_tree(checkout: Path, dest: Path) -> Path:
    """``dest/npu_preflight`` laid out as the installed namespace over ``checkout``'s files."""
    pkg = dest / "npu_preflight"
    if not pkg.exists():
        pkg.mkdir(parents=True)
        for entry in (checkout / "toolkit").iterdir():
            if entry.name != "__pycache__":
                (pkg / entry.name).symlink_to(entry)
        for sub, folder in PACKAGE_DIRS.items():
            if sub:
                (pkg / sub).symlink_to(checkout / folder)
    # bytecode where each import looks for it: beside the links for the top-level modules, in the
    # real folders for the linked subpackages (compile_dir does not follow linked folders); without
    # it, PYTHONDONTWRITEBYTECODE would have every run recompile them
    compileall.compile_dir(str(pkg), quiet=1)
    for folder in PACKAGE_DIRS.values():
        compileall.compile_dir(str(checkout / folder), quiet=1)
    return dest


def main(rev: str, rounds: int = 15) -> None:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True)
    short = sha.stdout.strip()
    checkout = OUT / f"rev-{short}"
    if not checkout.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(checkout), short], cwd=REPO, check=True)
    old = link_tree(checkout, OUT / f"rev-{short}-site")
    new = link_tree(REPO, OUT / "rev-current-site")
    plain, tok = llama70b(), llama70b(tokenizer=True)

    def ours(site: Path, folder: Path) -> list[str]:
        code = f"import runpy, sys\nsys.path.insert(0, {str(site)!r})\nrunpy.run_module('npu_preflight', run_name='__main__')"
        return [PY, "-c", code, "check", str(folder), "--static", "--no-out"]

    cmds = {
        f"{short}, no tokenizer": ours(old, plain),
        "current, no tokenizer": ours(new, plain),
        f"{short}, 150k-token tokenizer": ours(old, tok),
        "current, 150k-token tokenizer": ours(new, tok),
        "numpy reader (no tokenizer)": [PY, "-c", PEER_A, str(plain)],
    }
    got = dict(zip(cmds, median_runs(list(cmds.values()), rounds), strict=True))
    print(f"static check --no-out, {short} against the current code, median of {rounds} alternating rounds")
    for name, (wall, rss) in got.items():
        print(f"  {name}: {wall * 1e3:.1f} ms, {rss / 2**20:.1f} MiB")
    for what in ("no tokenizer", "150k-token tokenizer"):
        print(f"  {what}: current / {short} = {got[f'current, {what}'][0] / got[f'{short}, {what}'][0]:.2f}×")
    reader = got["numpy reader (no tokenizer)"][0]
    print(f"  no tokenizer: {short} / numpy reader = {got[f'{short}, no tokenizer'][0] / reader:.2f}×, ", end="")
    print(f"current / numpy reader = {got['current, no tokenizer'][0] / reader:.2f}×")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15)
