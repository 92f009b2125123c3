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
