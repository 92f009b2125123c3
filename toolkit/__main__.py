"""The program: ``python -m npu_preflight``, and the ``npu-preflight`` script through :func:`main`."""

import gc
import sys


def main() -> None:
    """Import the CLI with the cyclic collector off, then run it. The imports create some 22,000
    objects the collector tracks, and they live until the process ends; collecting while they are
    made walks them again and again for nothing. Afterwards they are frozen, so that no later
    collection walks them either, and the collector is on again with a young generation of 10,000
    objects instead of 700. A static check then makes no collection, or one with a 150k-token
    tokenizer, whose 300k-item tuples a collection walks once: 0.0 and 2.3 ms, against 5.7 and
    16.0 ms with Python's defaults (``python -m bench.gc_cost``). A long run still collects; what
    it can leave uncollected at a time grows by some megabytes at most."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        # tokenizer.json, if the run will read a large one, is read on the other core meanwhile
        from npu_preflight import readahead

        readahead.start(sys.argv[1:])
        from npu_preflight.cli import run
    finally:
        gc.freeze()
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        if collecting:
            gc.enable()
    run()


if __name__ == "__main__":
    main()
