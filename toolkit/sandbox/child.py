"""The sandboxed init child: ``python child.py REQUEST.json RESULT`` (events on fd 3), or
``python child.py --probe-first PROBE_SCRIPT PROBE_OUT TOKENIZER REQUEST.json RESULT``: the
environment probe first, in this process, then the init once the tool says ``go`` on stdin.

Stdlib-only so it runs under the deployment's interpreter (``--python``) even where the toolkit is
not installed. It loads the generator adapter by file path, streams progress events as JSON lines on
file descriptor 3 (a pipe the sandbox supervisor reads: a killed child still tells how far it got),
catches every exception, writes a result file and exits 0 — the only exit after which the tool
believes the result.

**As one rank of several** (launched by ``torch.distributed.run``, which sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``), RESULT is a directory: the rank writes ``result-<rank>.json``,
its events to ``events-<rank>.jsonl`` (the launcher does not pass fd 3 on), a fatal signal's stack to
``fault-<rank>.txt``; it gets its own model_config (rank, local_rank, npu_device_id = its local
rank's visible device), and after the generator has run it proves the fabric with an
``all_reduce`` and a ``barrier``, timed. A failed rank exits 1 so the launcher tears the group down;
one stopped by the launcher (SIGTERM) records that it was stopped.
"""

import faulthandler
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
import traceback

EVENTS = None
#: Written to stdout and stderr when the init starts after a probe in this process (``--probe-first``).
INIT_STARTS = "npu-preflight: the probe ended here; the init's own output follows"
STAGES = []
_CURRENT = {"stage": "start", "t": time.time()}


def emit(stage, done=None, total=None, **extra):
    """Record a progress event; a new stage closes the previous one's timing."""
    now = time.time()
    if stage != _CURRENT["stage"]:
        STAGES.append({"stage": _CURRENT["stage"], "duration_s": round(now - _CURRENT["t"], 4)})
        _CURRENT["stage"], _CURRENT["t"] = stage, now
    event = {"stage": stage, "done": done, "total": total, "t": round(now, 3)}
    event.update(extra)
    if EVENTS is not None:
        try:
            EVENTS.write(json.dumps(event, default=str) + "\n")
            EVENTS.flush()
        except (OSError, ValueError):
            pass


def rank_info():
    """(rank, local_rank, world_size) when launched as one rank of several, else None."""
    try:
        ws = int(os.environ["WORLD_SIZE"])
        rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except (KeyError, ValueError):
        return None
    return (rank, local, ws) if ws > 1 else None


def rank_request(request, rank, local, ws):
    """The rank's own request: its model_config copy and where it runs."""
    req = dict(request)
    mc = dict(request["model_config"])
    mc.update(rank=rank, local_rank=local, world_size=ws)
    visible = request.get("visible_devices") or []
    mc["npu_device_id"] = local if not visible or local < len(visible) else local % max(len(visible), 1)
    req["model_config"] = mc
    req["rank"] = {"rank": rank, "local_rank": local, "world_size": ws}
    return req


def prove_fabric(request, ws):
    """all_reduce and barrier over the process group (initialised here when the generator did not),
    timed; raises when the sum is wrong."""
    import torch
    import torch.distributed as dist

    emit("collective")
    if not dist.is_initialized():
        dist.init_process_group(request.get("dist_backend") or "gloo")
    device = "cpu"
    if dist.get_backend() == "nccl":
        device = f"cuda:{torch.cuda.current_device()}"
    elif dist.get_backend() == "hccl":
        device = f"npu:{torch.npu.current_device()}"
    t = time.time()
    x = torch.full((1,), float(dist.get_rank() + 1), device=device)
    dist.all_reduce(x)
    dist.barrier()
    took = time.time() - t
    want = ws * (ws + 1) / 2
    if abs(float(x.item()) - want) > 1e-3:
        raise RuntimeError(f"all_reduce returned {float(x.item())}, expected {want}")
    out = {"collective_s": round(took, 4), "dist_backend": dist.get_backend()}
    dist.destroy_process_group()
    return out


def _stopped(signum, frame=None):
    emit("stopped", signal=signum)
    try:
        if EVENTS is not None:
            EVENTS.close()
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)


def _watch_sigterm():
    """SIGTERM from the launcher must stop the rank even while its main thread is blocked inside a
    collective (where a Python signal handler cannot run): the C-level handler writes the signal
    number to a wakeup pipe, and this thread acts on it."""
    import threading

    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.signal(signal.SIGTERM, _stopped)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def wait():
        while True:
            try:
                data = os.read(r, 16)
            except OSError:
                return
            if not data:
                return
            if signal.SIGTERM in data:
                _stopped(signal.SIGTERM)

    threading.Thread(target=wait, daemon=True, name="sigterm-watch").start()


def load_adapter(request):
    gen = request["generator"]
    if ":" in gen:
        module_name, _, func = gen.partition(":")
        sys.path[:0] = [p for p in request.get("extra_sys_path", []) if p]
        module = importlib.import_module(module_name)
        factory = getattr(module, func)

        def run_custom(req, emit_fn):
            emit_fn("generator")
            obj = factory(dict(req["model_config"]), req["weights_dir"], req["device"])
            return {"generator_object": type(obj).__name__}

        return run_custom
    path = os.path.join(request["generators_dir"], f"{gen}_gen.py")
    spec = importlib.util.spec_from_file_location(f"preflight_{gen}_gen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


def probe_first(script, out_path, tokenizer_path):
    """The environment probe in this very process (torch is then imported once per run): run it,
    say so on fd 3, and wait for the tool's word on stdin. ``go`` means the request file is written;
    anything else (the tool closed the pipe: no init is wanted, or it died) ends the child."""
    spec = importlib.util.spec_from_file_location("preflight_probe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.probe(out_path, tokenizer_path or None)
    emit("_ready")
    if sys.stdin.readline().strip() != "go":
        os._exit(0)
    for stream in (sys.stdout, sys.stderr):  # the tool keeps only what follows, as the init's output
        stream.write(f"\n{INIT_STARTS}\n")
        stream.flush()
    STAGES.clear()  # the init's stages count from its request, not from the probe
    _CURRENT["stage"], _CURRENT["t"] = "start", time.time()


def main():
    global EVENTS
    args = sys.argv[1:]
    if args[:1] == ["--probe-first"]:
        try:
            EVENTS = os.fdopen(3, "w", encoding="utf-8")
        except OSError:
            EVENTS = None
        probe_first(*args[1:4])
        args = args[4:]
    req_path, result_path = args[:2]
    with open(req_path, encoding="utf-8") as fh:
        request = json.load(fh)
    ranked = rank_info()
    fault = None
    if ranked is not None:
        rank, local, ws = ranked
        request = rank_request(request, rank, local, ws)
        out_dir = result_path
        result_path = os.path.join(out_dir, f"result-{rank}.json")
        EVENTS = open(os.path.join(out_dir, f"events-{rank}.jsonl"), "w", encoding="utf-8")
        fault = open(os.path.join(out_dir, f"fault-{rank}.txt"), "w", encoding="utf-8")
        faulthandler.enable(fault)
        _watch_sigterm()
        group = os.environ.get("GROUP_RANK", "")
        emit(
            "start",
            rank=rank,
            local_rank=local,
            world_size=ws,
            group_rank=int(group) if group.isdigit() else None,
            pid=os.getpid(),
        )
    elif EVENTS is None:
        try:
            EVENTS = os.fdopen(3, "w", encoding="utf-8")
        except OSError:
            EVENTS = None
    result = {"outcome": "ok", "stage": None, "error": None, "stages": STAGES, "data": {}, "pid": os.getpid()}
    t0 = time.time()
    try:
        emit("import")
        run = load_adapter(request)
        result["data"] = run(request, emit) or {}
        if ranked is not None:
            result["data"].update(prove_fabric(request, ranked[2]))
    except BaseException as exc:  # noqa: BLE001 - everything is reported, nothing escapes
        result["outcome"] = "error"
        result["stage"] = _CURRENT["stage"]
        result["error"] = {
            "type": type(exc).__name__,
            "module": type(exc).__module__,
            "message": str(exc)[:8000],
            "traceback": traceback.format_exc()[-12000:],
        }
        if isinstance(exc, ImportError) and getattr(exc, "name", None):
            result["error"]["missing_module"] = exc.name
    emit("done")
    result["duration_s"] = round(time.time() - t0, 4)
    if ranked is not None:
        result["rank"] = request["rank"]
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    os.replace(tmp, result_path)
    return 1 if ranked is not None and result["outcome"] != "ok" else 0


if __name__ == "__main__":
    code = main()
    # The result is on disk: skip the interpreter's teardown of torch and friends (about a second
    # of module finalisation that the parent would otherwise wait for).
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        if EVENTS is not None:
            EVENTS.close()
    except (OSError, ValueError):
        pass
    os._exit(code)
