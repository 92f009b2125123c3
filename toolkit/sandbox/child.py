"""The sandboxed init child: ``python child.py REQUEST.json RESULT.json`` (events on fd 3).

Stdlib-only so it runs under the deployment's interpreter (``--python``) even where the toolkit is
not installed. It loads the generator adapter by file path, streams progress events as JSON lines on
file descriptor 3 (a pipe the sandbox supervisor reads: a killed child still tells how far it got),
catches every exception, writes a result file and exits 0 — the only exit after which the tool
believes the result.
"""

import importlib
import importlib.util
import json
import os
import sys
import time
import traceback

EVENTS = None
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


def main():
    global EVENTS
    req_path, result_path = sys.argv[1:3]
    with open(req_path, encoding="utf-8") as fh:
        request = json.load(fh)
    try:
        EVENTS = os.fdopen(3, "w", encoding="utf-8")
    except OSError:
        EVENTS = None
    result = {"outcome": "ok", "stage": None, "error": None, "stages": STAGES, "data": {}}
    t0 = time.time()
    try:
        emit("import")
        run = load_adapter(request)
        result["data"] = run(request, emit) or {}
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
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    os.replace(tmp, result_path)


if __name__ == "__main__":
    main()
    # The result is on disk: skip the interpreter's teardown of torch and friends (about a second
    # of module finalisation that the parent would otherwise wait for).
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        if EVENTS is not None:
            EVENTS.close()
    except (OSError, ValueError):
        pass
    os._exit(0)
