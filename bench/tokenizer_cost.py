"""Where a 150k-token tokenizer.json's time goes in a fresh process (issue 17, goal 2): each line is
a fresh interpreter that imports the package's tokenizer reader first (as a check run has), then
times importing msgspec, reading the file, the UTF-8 check, the decode of the keys the checks use
with the vocabulary left raw, the vocabulary read as one tuple of keys and ids (what
``tokenizer._Pairs`` does), and the checks over them (``tokenizer_info``: the largest id).
``dict`` times the path this replaced: the vocabulary decoded into a dict, then the checks over it.

Not part of ``make bench`` (a few seconds): ``python -m bench.tokenizer_cost [ROUNDS]``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from bench.common import PY, REPO, env, llama70b

CODE = r"""
import json, sys, time
from typing import Any
from npu_preflight.formats import tokenizer
from npu_preflight.formats.jsonload import paused_gc, read_regular
path, mode = sys.argv[1], sys.argv[2]
t = {}
c = time.perf_counter()
import msgspec
t["import msgspec"] = time.perf_counter() - c
c = time.perf_counter()
raw = read_regular(path, 1 << 30)
t["read"] = time.perf_counter() - c
c = time.perf_counter()
assert tokenizer._is_utf8(raw)
t["UTF-8 check"] = time.perf_counter() - c
if mode == "tuples":
    c = time.perf_counter()
    model = msgspec.defstruct("M", [("type", Any, None), ("vocab", msgspec.Raw, None)])
    dec = msgspec.json.Decoder(msgspec.defstruct("N", [("model", model | None, None), ("added_tokens", Any, None)]))
    with paused_gc():
        got = dec.decode(raw)
    t["decode, vocabulary left raw"] = time.perf_counter() - c
    c = time.perf_counter()
    with paused_gc():
        pairs = tokenizer._Pairs.read(bytes(got.model.vocab))
    assert isinstance(pairs, tokenizer._Pairs)
    t["vocabulary as tuples"] = time.perf_counter() - c
    c = time.perf_counter()
    info = tokenizer.tokenizer_info({"model": {"type": got.model.type, "vocab": pairs}, "added_tokens": got.added_tokens})
    t["checks (largest id)"] = time.perf_counter() - c
else:
    c = time.perf_counter()
    model = msgspec.defstruct("M", [("type", Any, None), ("vocab", Any, None)])
    dec = msgspec.json.Decoder(msgspec.defstruct("N", [("model", model | None, None), ("added_tokens", Any, None)]))
    with paused_gc():
        got = dec.decode(raw)
    t["decode, vocabulary as a dict"] = time.perf_counter() - c
    c = time.perf_counter()
    info = tokenizer.tokenizer_info({"model": {"type": got.model.type, "vocab": got.model.vocab}, "added_tokens": got.added_tokens})
    t["checks (largest id)"] = time.perf_counter() - c
t["total"] = sum(t.values())
print(json.dumps(t))
"""


def main(rounds: int = 5) -> None:
    folder = llama70b(tokenizer=True)
    path = folder / "tokenizer.json"
    print(f"{path.stat().st_size / 1e6:.1f} MB tokenizer.json, fresh interpreters, median of {rounds}")
    for mode in ("tuples", "dict"):
        runs = []
        for _ in range(rounds):
            out = subprocess.run(
                [PY, "-c", CODE, str(path), mode], capture_output=True, env=env(), cwd=REPO, check=True
            )
            runs.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
        print(f"  {mode}:")
        for key in runs[0]:
            print(f"    {key}: {statistics.median(r[key] for r in runs) * 1e3:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
