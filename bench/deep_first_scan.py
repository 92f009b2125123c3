"""Where two warm deep workers lose against two hashlib processes (issue 17, goal 4): each line
runs in a fresh interpreter over the deep bench's shards, page cache warmed with ``cat`` first.

* ``threads``: two scans in one process, with two worker threads: the first and the second scan;
* ``forked``: the same files scanned by two forked processes, and hashed by two forked processes;
* ``chunk``: two worker threads at read sizes from 256 KiB to 2 MiB.

Not part of ``make bench`` (about a minute): ``python -m bench.deep_first_scan``."""

from __future__ import annotations

import subprocess
import sys

from bench.common import PY, REPO, env
from bench.deep_bench import folder

CODE = r"""
import hashlib, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from npu_preflight import deep
from npu_preflight.formats.safetensors import read_header

mode, d = sys.argv[1], Path(sys.argv[2])
if mode.startswith("chunk-"):
    deep.CHUNK = int(mode[6:]) << 10
files = sorted(d.glob("*.safetensors"))
items = [(f, read_header(f)) for f in files]
deep._np()
total = sum(f.stat().st_size for f in files)
stop = threading.Event()


def scan(item):
    return deep.scan_file(item[0], item[0].name, item[1], stop)


def hash_only(item):
    h, buf = hashlib.sha256(), bytearray(1 << 20)
    with open(item[0], "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(memoryview(buf)[:n])


def forked(fn):
    pids = []
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            for it in items[i::2]:
                fn(it)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def threaded():
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(scan, items))


def rate(fn):
    t = time.perf_counter()
    fn()
    return f"{total / (time.perf_counter() - t) / 1e9:.2f} GB/s"


if mode == "threads":
    print("two threads: first scan", rate(threaded), "· second scan", rate(threaded))
elif mode == "forked":
    print("two forked processes: scan", rate(lambda: forked(scan)), "· hashlib", rate(lambda: forked(hash_only)))
else:
    print(f"two threads, {mode[6:]} KiB reads: first scan", rate(threaded))
"""


def main() -> None:
    d = folder()
    shards = sorted(str(p) for p in d.glob("*.safetensors"))
    for mode in ("threads", "forked", "threads", "forked", "chunk-256", "chunk-512", "chunk-1024", "chunk-2048"):
        subprocess.run(["cat", *shards], stdout=subprocess.DEVNULL, check=True)
        out = subprocess.run([PY, "-c", CODE, mode, str(d)], capture_output=True, text=True, env=env(), cwd=REPO)
        print(out.stdout.strip() or out.stderr.strip()[-500:])


if __name__ == "__main__":
    main()
    sys.exit(0)
