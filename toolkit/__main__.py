"""The program: ``python -m npu_preflight``, and the ``npu-preflight`` script through :func:`main`."""

import gc


def main() -> None:
    """Import the CLI with the cyclic collector off, then run it. The imports create some 22,000
    objects the collector tracks, and they live until the process ends; collecting while they are
    made walks them again and again for nothing (6 ms of a static check, bench/RESULTS.md). Afterwards they are frozen, so
    that no later collection walks them either, and the collector is on again as usual."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        from npu_preflight.cli import run
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    run()


if __name__ == "__main__":
    main()
