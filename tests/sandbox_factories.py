"""Generator factories for the sandbox tests (``--generator tests.sandbox_factories:NAME``). Each
misbehaves in one real way inside the sandbox child."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any


def fine(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    return object()


def sigkill(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    os.kill(os.getpid(), signal.SIGKILL)
    return object()


def segfault(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    ctypes.string_at(0)
    return object()


def hang(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    pidfile = os.environ["PREFLIGHT_TEST_PIDFILE"]
    child = subprocess.Popen(["sleep", "300"])
    with open(pidfile, "w") as fh:
        fh.write(str(child.pid))
    time.sleep(300)
    return object()


def flood(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    chunk = "x" * 1023 + "\n"
    for _ in range(200_000):  # ~200 MB to each stream
        sys.stdout.write(chunk)
        sys.stderr.write(chunk)
    raise RuntimeError("flooded and failed")


def missing_library(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    ctypes.CDLL("libhccl.so")
    return object()


def npu_oom(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    raise RuntimeError(
        "NPU out of memory. Tried to allocate 2.00 GiB (NPU 0; 60.96 GiB total capacity; 58.10 GiB already "
        "allocated; 58.10 GiB current active; 1.12 GiB free; 58.50 GiB reserved in total by PyTorch)"
    )


def cuda_oom(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    raise RuntimeError(
        "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.10 GiB of which "
        "3.06 MiB is free."
    )


# -- containment (issue: the sandbox contains every descendant, every byte, every exit path) -------


def _sleeper(detach: str) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            if detach == "setsid":
                os.setsid()
            else:
                os.setpgid(0, 0)
            time.sleep(300)
        finally:
            os._exit(0)
    return pid


def escape_setsid(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    _sleeper("setsid")
    return object()


def escape_setpgid(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    _sleeper("setpgid")
    return object()


def forked_hogs(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Six children of 700 MiB each: no single process passes a 1 GiB cap, the tree does."""
    kids = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:
            try:
                block = bytearray(700 * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(30)
            finally:
                os._exit(0)
        kids.append(pid)
        time.sleep(0.3)
    for pid in kids:
        os.waitpid(pid, 0)
    return object()


def forge_then_segfault(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Writes a result saying ok, then dies of a signal."""
    with open(sys.argv[2], "w") as fh:
        fh.write('{"outcome": "ok", "stage": null, "error": null, "stages": [], "data": {"peak_bytes": 1}}')
    ctypes.string_at(0)
    return object()


def tamper(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    with open(os.path.join(weights_dir, "config.json"), "a") as fh:
        fh.write("\n")
    with open(os.path.join(weights_dir, "planted.bin"), "w") as fh:
        fh.write("x")
    return object()


def kill_parent(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(3)
    return object()


def hang_after_start(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Starts a detached grandchild, says it has started, then hangs."""
    _sleeper("setsid")
    with open(os.environ["PREFLIGHT_TEST_STARTED"], "w") as fh:
        fh.write("started")
    time.sleep(300)
    return object()


def event_flood(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """1 GiB to the events descriptor, no newline: the parent must never hold it."""
    chunk = b"e" * (1 << 20)
    for _ in range(1024):
        os.write(3, chunk)
    return object()


def stdout_flood(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    chunk = b"o" * (1 << 20)
    for _ in range(1024):
        os.write(1, chunk)
    return object()


def _result_and_exit(text: str) -> None:
    with open(sys.argv[2], "w") as fh:
        fh.write(text)
    os._exit(0)


def result_list(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    _result_and_exit("[]")
    return object()


def result_bad_stages(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    _result_and_exit('{"outcome": "ok", "stages": "abc", "data": {}}')
    return object()


def result_nan(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    _result_and_exit('{"outcome": "ok", "stages": [], "data": {"peak_bytes": NaN}}')
    return object()


def bad_events(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    for line in (b"[]\n", b"NaN\n", b'"text"\n', b'{"stage": 5}\n', b"\xff\xfe\n", b'{"stage": "mine", "done": NaN}\n'):
        os.write(3, line)
    return object()


def exit_137(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    os._exit(137)
    return object()


# -- one rank of several misbehaves (the others are fine) -----------------------------------------


def rank1_oom(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Rank 1 commits 3 GB of host memory: over the cap, the OOM killer takes it."""
    if model_config.get("rank") == 1:
        hog = bytearray(3 * 1024**3)
        time.sleep(5)
        return hog
    return object()


def rank1_segfault(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    if model_config.get("rank") == 1:
        time.sleep(0.5)
        ctypes.string_at(0)
    return object()


def rank1_hangs(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Rank 1 never gets past its init; the others reach the collective and wait."""
    if model_config.get("rank") == 1:
        time.sleep(3600)
    return object()


def rank1_raises(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    if model_config.get("rank") == 1:
        raise RuntimeError("rank 1 refuses its shard")
    return object()


def rank_lies(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Rank 1 writes an ok result for itself, then dies of SIGSEGV: the launcher's word wins."""
    if model_config.get("rank") == 1:
        import json as _json

        out = sys.argv[2]
        with open(os.path.join(out, "result-1.json"), "w") as fh:
            _json.dump({"outcome": "ok", "stage": None, "error": None, "stages": [], "data": {}}, fh)
        ctypes.string_at(0)
    return object()


def says_ready_then_hangs(model_config: dict[str, Any], weights_dir: str, device: str) -> object:
    """Claims, mid-init, the readiness that stops the supervisor's clock while a child waits for
    the tool, then hangs: the claim must buy it nothing."""
    os.write(3, b'{"stage": "_ready"}\n')
    with open(os.environ["PREFLIGHT_TEST_STARTED"], "w") as fh:
        fh.write("started")
    time.sleep(300)
    return object()
