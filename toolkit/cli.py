"""The command line: a thin click layer over the runner. The only module that imports click."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from npu_preflight import __version__
from npu_preflight.errors import UsageError
from npu_preflight.model import Report, Severity
from npu_preflight.policy import EXIT_INTERNAL, EXIT_NOT_READY, EXIT_READY, EXIT_USAGE, Policy, exit_code, parse_ids

if TYPE_CHECKING:
    from npu_preflight.mconfig import ModelConfig
    from npu_preflight.registry import Registry

EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

#: Files ``check --out DIR`` writes, each from one renderer name.
OUTPUT_FILES = {"report.json": "json", "report.html": "html", "junit.xml": "junit", "sarif.json": "sarif"}


@cache
def registry() -> Registry:
    """Every check of the modules ``npu_preflight.checks`` lists (the app hands them to the engine)."""
    from npu_preflight.checks import CHECK_MODULES
    from npu_preflight.registry import Registry

    return Registry.from_modules(CHECK_MODULES)


def _fail_usage(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _weights_dir(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        _fail_usage(f"weights folder {value!r} does not exist")
    if not path.is_dir():
        _fail_usage(f"{value!r} is a file, not a weights folder")
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        _fail_usage(f"weights folder {value!r} cannot be read: {exc.strerror}")
    hint = _weights_hint(path)
    if hint:
        _fail_usage(hint)
    return path.resolve()


def _weights_hint(path: Path) -> str | None:
    """A folder that is clearly not the weights folder but holds it: the Hugging Face cache root of a
    model (``models--org--name``, whose files are under ``snapshots/<rev>``), or a parent of weight
    folders. Names the folder(s) meant."""
    has_weights = any(
        p.suffix in (".safetensors", ".bin") or p.name == "config.json" for p in _first(path.iterdir(), 2000)
    )
    if has_weights:
        return None
    snaps = path / "snapshots"
    if path.name.startswith("models--") and snaps.is_dir():
        revs = sorted(_first(snaps.iterdir(), 50), key=lambda p: p.stat().st_mtime, reverse=True)
        if revs:
            return (
                f"{str(path)!r} is a Hugging Face cache entry; the weights are in a snapshot: did you mean "
                f"{str(revs[0])!r}?" + (f" ({len(revs)} snapshots)" if len(revs) > 1 else "")
            )
    subs = [
        d
        for d in _first(path.iterdir(), 2000)
        if d.is_dir() and not d.name.startswith(".") and ((d / "config.json").is_file() or (d / "snapshots").is_dir())
    ]
    if subs:
        shown = ", ".join(repr(str(d)) for d in sorted(subs)[:5])
        more = f" and {len(subs) - 5} more" if len(subs) > 5 else ""
        return (
            f"{str(path)!r} holds no weights but contains weight folders: {shown}{more}; pass one of them "
            "(or use 'npu-preflight scan' to check them all)"
        )
    return None


def _first(it: Any, n: int) -> list[Any]:
    out = []
    try:
        for x in it:
            out.append(x)
            if len(out) >= n:
                break
    except OSError:
        pass
    return out


def _check_target(name: str | None) -> None:
    """``--target-device`` must name a catalog device."""
    if name is None:
        return
    from npu_preflight.catalog import find_device

    if find_device(name) is None:
        from npu_preflight.catalog import catalog

        names = [d["name"] for d in catalog()]
        close = [n for n in names if n.lower().startswith(name.lower())] or __import__("difflib").get_close_matches(
            name, names, n=4, cutoff=0.5
        )
        hint = f" (did you mean {', '.join(close[:6])}?)" if close else ""
        raise UsageError(f"--target-device {name!r} is not in the device catalog{hint} (see 'npu-preflight devices')")


def _out_dir(value: str, weights: Path, option: str = "--out") -> Path:
    out = Path(value).resolve()
    if out == weights or weights in out.parents:
        _fail_usage(f"{option} {value!r} is inside the weights folder; the tool never writes there")
    return out


def _writable_out(value: str, weights: Path) -> Path:
    """``--out`` resolved, refused inside the weights folder, created, and proven writable — before
    the run starts, so an unusable output is a usage error and not a lost report."""
    from npu_preflight.output import OutputError, prepare_dir

    out = _out_dir(value, weights)
    try:
        prepare_dir(out)
    except OutputError as exc:
        raise UsageError(f"--out {value!r}: {exc}") from None
    return out


def _model_config_options(func: F) -> F:
    func = click.option(
        "-s",
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set one model_config key (value read as JSON, else as a string); repeatable.",
    )(func)
    func = click.option(
        "-c",
        "--model-config",
        "model_config_path",
        type=click.Path(dir_okay=False),
        help="JSON or YAML model_config, or a MindIE-Service config.json.",
    )(func)
    return func


def _read_model_config(path: str | None, sets: tuple[str, ...]) -> ModelConfig | None:
    from npu_preflight.mconfig import ModelConfig, apply_sets, load_model_config

    base: dict[str, Any] | None = None
    source = None
    if path is not None:
        base, kind = load_model_config(Path(path))
        source = f"{path} ({kind})"
    merged = apply_sets(base, sets)
    if merged is None:
        return None
    if sets:
        source = f"{source} + --set" if source else "--set"
    return ModelConfig.from_mapping(merged, source)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling the job) stops the run like Ctrl-C: children are killed and
    the report is still written."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (click's test runner in a thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Group(click.Group):
    """Maps the tool's own errors to exit 2 and anything unexpected to exit 3, never a bare traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # the reader went away (``npu-preflight checks | head -1``): stop quietly, as cat does
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except UsageError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception:  # noqa: BLE001 - last line of defence: report and exit 3
            click.echo("npu-preflight: internal error (please report it):", err=True)
            import traceback

            click.echo(traceback.format_exc(), err=True)
            sys.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="npu-preflight")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour in the terminal output (auto: on a tty, unless NO_COLOR; FORCE_COLOR forces it).",
)
def main(color: str) -> None:
    """Will this weight folder and model_config start on this machine? Checks before you deploy.

    Exit status: 0 ready, 1 not ready, 2 usage error or unreadable input, 3 internal error.
    """
    global _COLOR_MODE
    _COLOR_MODE = color


_COLOR_MODE = "auto"


def _is_tty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal: False for a closed one too (Python makes ``sys.stderr`` None
    when the process starts with descriptor 2 closed, as some service managers start it)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def use_color(stream: Any = None) -> bool:
    """--color always/never, else NO_COLOR (https://no-color.org) off, FORCE_COLOR on, else a tty."""
    if _COLOR_MODE != "auto":
        return _COLOR_MODE == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _is_tty(stream or sys.stdout)


def _width() -> int | None:
    """The terminal's width when stdout is one (text is wrapped to it), else None (CI logs: no wrap)."""
    if not _is_tty(sys.stdout):
        return None
    import shutil

    return max(shutil.get_terminal_size((100, 24)).columns, 40)


@main.command()
@click.argument("weights_dirs", metavar="WEIGHTS_DIR...", nargs=-1, required=True)
@_model_config_options
@click.option("--static", is_flag=True, help="File checks and plan only: no probe, no init (CI without devices).")
@click.option("--no-init", is_flag=True, help="Everything but the sandboxed init.")
@click.option("--deep", is_flag=True, help="Read every tensor byte (sha256, NaN/Inf, fp16 overflow).")
@click.option("--device", type=click.Choice(["auto", "npu", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--target-device", metavar="NAME", help="Plan for a catalog device (e.g. 910B3, 310P3, H100-80GB).")
@click.option(
    "--generator",
    default="transformers",
    show_default=True,
    metavar="NAME|MOD:FUNC",
    help="Init adapter: transformers, mindie, or package.module:factory.",
)
@click.option("--python", "python_path", metavar="PATH", help="Interpreter for the probe and the init.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1, max=7 * 24 * 3600),
    default=600,
    show_default=True,
    help="Init time limit, seconds (at most a week).",
)
@click.option("--memory-limit", metavar="SIZE", help="Host memory cap for the init child (e.g. 8GiB).")
@click.option(
    "--out",
    "out_dir",
    default="preflight-report",
    show_default=True,
    metavar="DIR",
    help="Where report.json, report.html and junit.xml go.",
)
@click.option("--no-out", is_flag=True, help="Write no report files.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "github", "sarif"]),
    default="text",
    show_default=True,
    help="What goes to stdout.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning"]),
    default="error",
    show_default=True,
    help="Lowest severity that makes the verdict not_ready.",
)
@click.option("--select", metavar="IDS", help="Only these check ids or prefixes (comma-separated).")
@click.option("--ignore", metavar="IDS", help="Skip these check ids or prefixes (comma-separated).")
@click.option("--trust-remote-code", is_flag=True, help="Allow auto_map code, inside the sandbox only.")
@click.option(
    "--containment",
    type=click.Choice(["auto", "subreaper"]),
    default="auto",
    show_default=True,
    help="Sandbox containment: auto uses a cgroup and (as root) PID/mount namespaces where the machine allows; "
    "subreaper uses only the subreaper and the memory watchdog.",
)
@click.option(
    "--workers", type=click.IntRange(min=1, max=256), help="Parallel readers for --deep (default: all cores)."
)
@click.option(
    "--ranks",
    type=click.Choice(["all", "0"]),
    default="all",
    show_default=True,
    help="all: launch world_size ranks with torch.distributed.run (each loads its shard); "
    "0: one process loads the whole model (a quick check).",
)
@click.option("--nnodes", type=click.IntRange(min=1, max=4096), default=1, show_default=True, help="Nodes in the job.")
@click.option(
    "--node-rank", type=click.IntRange(min=0, max=4095), default=0, show_default=True, help="This node's index."
)
@click.option(
    "--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous of a multi-node run (the same on every node)."
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Policy file (default: the nearest .npu-preflight.toml or pyproject.toml [tool.npu-preflight]).",
)
@click.option("--no-config", is_flag=True, help="Ignore any policy file.")
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="Answer an unchanged folder (same files, model_config, options, environment) from here.",
)
@click.option("--no-cache", is_flag=True, help="Check even when the cache has the answer.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=256),
    help="Folders checked at once with several WEIGHTS_DIRs (default: CPUs).",
)
def check(
    weights_dirs: tuple[str, ...],
    model_config_path: str | None,
    sets: tuple[str, ...],
    static: bool,
    no_init: bool,
    deep: bool,
    device: str,
    target_device: str | None,
    generator: str,
    python_path: str | None,
    timeout: float,
    memory_limit: str | None,
    out_dir: str,
    no_out: bool,
    fmt: str,
    fail_on: str,
    select: str | None,
    ignore: str | None,
    trust_remote_code: bool,
    workers: int | None,
    containment: str,
    ranks: str,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    config_path: str | None,
    no_config: bool,
    cache_dir: str | None,
    no_cache: bool,
    jobs: int | None,
) -> None:
    """Check WEIGHTS_DIR (with its model_config) for readiness and write the reports. With several
    folders, each is checked in its own process and the run ends with a summary table, an index page
    and the worst exit code.

    Settings come from the flags, else from the policy file (.npu-preflight.toml, or pyproject.toml's
    [tool.npu-preflight], found by walking up from the working directory)."""
    from npu_preflight.context import Context, Progress, RunOptions
    from npu_preflight.runner import crash_report, run
    from npu_preflight.units import parse_size

    if len(weights_dirs) > 1:
        _check_many_and_exit([Path(d) for d in weights_dirs], out_dir, jobs, python_path)
    weights_dir = weights_dirs[0]
    weights = _weights_dir(weights_dir)
    pf = None if no_config else _policy_file(config_path)
    if pf is not None and cache_dir is None and pf.values.get("cache-dir"):
        cache_dir = pf.resolve_path("cache-dir")
    if pf is not None:
        given = _from_file(
            pf,
            fail_on=fail_on,
            select=select,
            ignore=ignore,
            target_device=target_device,
            model_config_path=model_config_path,
            device=device,
            generator=generator,
            timeout=timeout,
            memory_limit=memory_limit,
            python_path=python_path,
        )
        fail_on, select, ignore = given["fail_on"], given["select"], given["ignore"]
        target_device, model_config_path, device = given["target_device"], given["model_config_path"], given["device"]
        generator, timeout, memory_limit = given["generator"], given["timeout"], given["memory_limit"]
        python_path = given["python_path"]
    out = None if no_out else _writable_out(out_dir, weights)
    mc = _read_model_config(model_config_path, sets)
    mem_cap = None
    if memory_limit is not None:
        try:
            mem_cap = parse_size(memory_limit)
        except ValueError as exc:
            raise UsageError(f"--memory-limit: {exc}") from None
    _check_target(target_device)
    _check_nodes(nnodes, node_rank, rdzv_endpoint)
    if deep:
        try:
            import numpy  # noqa: F401 - only to say early that --deep cannot decode without it
        except ModuleNotFoundError:
            raise UsageError(
                "--deep decodes tensors with numpy, which is not installed: pip install 'npu-preflight[deep]'"
            ) from None
    reg = registry()
    folder_ignores: tuple[tuple[str, str, str], ...] = ()
    if pf is not None:
        folder_ignores = tuple(
            (cid, fi.reason, f"{pf.path.name} (folder {fi.pattern})")
            for fi in pf.ignores_for(weights)
            for cid in fi.checks
        )
    policy = Policy(parse_ids(select), parse_ids(ignore), Severity(fail_on), folder_ignores)
    reg.check_selection("--select", policy.select)
    reg.check_selection("--ignore", policy.ignore)
    options = RunOptions(
        static=static,
        no_init=no_init,
        deep=deep,
        device=device,  # type: ignore[arg-type]  # click.Choice guarantees the Literal
        target_device=target_device,
        generator=generator,
        python=python_path,
        timeout=timeout,
        memory_limit=mem_cap,
        trust_remote_code=trust_remote_code,
        workers=workers,
        containment=containment,  # type: ignore[arg-type]  # click.Choice guarantees the Literal
        ranks=ranks,
        nnodes=nnodes,
        node_rank=node_rank,
        rdzv_endpoint=rdzv_endpoint,
        policy_file=str(pf.path) if pf is not None else None,
        model_config_path=str(Path(model_config_path).resolve()) if model_config_path else None,
    )
    cache_key = None
    if cache_dir and not no_cache:
        from npu_preflight.cache import cache_key as make_key
        from npu_preflight.cache import lookup

        cache_key = make_key(
            weights,
            mc.to_dict() if mc is not None else None,
            options.to_dict(),
            policy.select,
            policy.ignore + tuple(f"{p}:{w}" for p, w, _ in policy.folder_ignores),
            policy.fail_on.value,
            os.environ,
        )
        hit = lookup(Path(cache_dir), cache_key)
        if hit is not None:
            from dataclasses import replace as _replace

            cached = Report.from_dict(hit)
            cached = _replace(cached, options={**cached.options, "cache_hit": True, "cache_key": cache_key})
            failed_render = _emit(cached, fmt, out)
            sys.exit(EXIT_INTERNAL if failed_render else exit_code(cached))
    tty = fmt == "text" and _is_tty(sys.stderr)
    if tty:
        progress = Progress(_progress_printer(), _init_progress, _deep_progress)
    else:  # CI logs: plain lines, a phase or an init stage at a time, never silent through a long init
        progress = Progress(_phase_lines(), _init_lines(), _deep_lines)
    ctx = Context(weights, mc, options=options, progress=progress)
    with _sigterm_as_interrupt():
        try:
            report = run(ctx, reg.specs, policy)
        except Exception:  # noqa: BLE001 - the run failed as a whole: the report still gets written
            import traceback

            trace = traceback.format_exc()
            click.echo(
                f"npu-preflight: internal error (please report it); the report lists every check as errored:\n{trace}",
                err=True,
            )
            report = crash_report(
                str(weights),
                reg.specs,
                policy,
                trace,
                model_config=mc.to_dict() if mc is not None else None,
                options=options.to_dict(),
            )
    if tty:
        click.echo("\r\x1b[K", nl=False, err=True)
    if cache_key is not None and cache_dir:
        from npu_preflight.cache import store

        try:
            store(Path(cache_dir), cache_key, report)
        except OSError as exc:
            click.echo(
                f"npu-preflight: the cache in {cache_dir!r} could not be written ({exc.strerror or exc})", err=True
            )
    failed_render = _emit(report, fmt, out)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_INTERNAL if failed_render else exit_code(report))


def _init_progress(event: Any) -> None:
    """One line for the sandbox child's stage (importing, tokenizer, weights n/N, KV cache, forward)."""
    stage, done, total = event.get("stage"), event.get("done"), event.get("total")
    extra = ""
    if isinstance(done, int) and isinstance(total, int) and total:
        extra = f" {done / 2**20:.0f}/{total / 2**20:.0f} MiB" if stage == "weights" else f" {done}/{total}"
    click.echo(f"\r\x1b[Kinit: {stage}{extra}", nl=False, err=True)


def _phase_lines() -> Callable[[Any], None]:
    """One stderr line per phase entered."""
    seen: set[str] = set()

    def show(spec: Any) -> None:
        phase = spec.phase.value
        if phase not in seen:
            seen.add(phase)
            click.echo(f"npu-preflight: {phase} checks…", err=True)

    return show


def _init_lines() -> Callable[[Any], None]:
    """One stderr line per init stage (and per rank's stage), weights progress at most every 10 s."""
    import time

    state: dict[str, Any] = {"stage": None, "t": 0.0}

    def show(event: Any) -> None:
        stage = event.get("stage")
        now = time.monotonic()
        if stage != state["stage"] or now - state["t"] >= 10:
            state["stage"], state["t"] = stage, now
            done, total = event.get("done"), event.get("total")
            extra = ""
            if isinstance(done, int) and isinstance(total, int) and total:
                extra = f" {done / 2**20:.0f}/{total / 2**20:.0f} MiB" if stage == "weights" else f" {done}/{total}"
            click.echo(f"npu-preflight: init {stage}{extra}", err=True)

    return show


def _deep_lines(total: int, files: int) -> Callable[[int, int], None]:
    """The deep scan's progress for a log: a line at most every 10 s."""

    def line(done_bytes: int, done_files: int, rate: float) -> None:
        click.echo(
            f"npu-preflight: deep scan {done_files}/{files} files, {done_bytes / 2**30:.1f}/{total / 2**30:.1f} GiB",
            err=True,
        )

    return _throttled(files, 10.0, line, first_at_once=False)


def _throttled(
    files: int, every: float, show: Callable[[int, int, float], None], *, first_at_once: bool = True
) -> Callable[[int, int], None]:
    """The deep scan's per-chunk update (called from every worker thread): totals kept under a lock,
    ``show(bytes, files, bytes_per_s)`` called at most every ``every`` seconds, and once all files
    are done."""
    import threading
    import time

    lock = threading.Lock()
    start = time.monotonic()
    state = {"bytes": 0, "files": 0, "shown": 0.0 if first_at_once else start}

    def update(nbytes: int, nfiles: int) -> None:
        with lock:
            state["bytes"] += nbytes
            state["files"] += nfiles
            now = time.monotonic()
            if now - state["shown"] < every and state["files"] < files:
                return
            state["shown"] = now
            show(int(state["bytes"]), int(state["files"]), state["bytes"] / max(now - start, 1e-6))

    return update


def _progress_printer() -> Callable[[Any], None]:
    def show(spec: Any) -> None:
        click.echo(f"\r\x1b[K{spec.phase.value:<12} {spec.id} {spec.title}"[:120], nl=False, err=True)

    return show


def _render(name: str, report: Report, color: bool = False) -> str:
    """One renderer's output; the HTML page also gets every check's explain text."""
    from npu_preflight.reports import RENDERERS, RenderOptions

    specs = registry().specs
    docs = {s.id: s.doc for s in specs} if name in ("html", "sarif") else {}
    rules = (
        {
            s.id: {"title": s.title, "severity": s.severity.value, "backend": s.backend, "source": s.source}
            for s in specs
        }
        if name == "sarif"
        else {}
    )
    width = _width() if name == "text" else None
    return RENDERERS[name](report, RenderOptions(color=color, docs=docs, rules=rules, width=width))


def _emit(report: Report, fmt: str, out: Path | None) -> bool:
    """Write the report set and print ``fmt`` to stdout. A renderer that fails is reported on
    stderr and the others are still written; returns whether any failed."""
    from npu_preflight.output import OutputError, write_set

    failed = False
    if out is not None:
        files: dict[str, str] = {}
        for name, renderer in OUTPUT_FILES.items():
            try:
                files[name] = _render(renderer, report)
            except Exception:  # noqa: BLE001 - one broken renderer must not cost the other files
                failed = True
                import traceback

                click.echo(f"npu-preflight: internal error rendering {name}:\n{traceback.format_exc()}", err=True)
        try:
            write_set(out, files)
        except OutputError as exc:
            failed = True
            click.echo(f"npu-preflight: {exc}", err=True)
    try:
        colored = use_color()
        click.echo(_render(fmt, report, color=colored), nl=False, color=colored)
    except Exception:  # noqa: BLE001
        failed = True
        import traceback

        click.echo(f"npu-preflight: internal error rendering {fmt}:\n{traceback.format_exc()}", err=True)
    if fmt == "text" and out is not None:
        click.echo(f"reports: {out}/", err=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(_render("markdown", report) + "\n")
        except OSError as exc:
            click.echo(f"npu-preflight: cannot append to GITHUB_STEP_SUMMARY ({exc.strerror or exc})", err=True)
    return failed


def _load_report(path: str) -> Report:
    """A stored report.json, validated against the schema (exit 2 when it is not one)."""
    from npu_preflight.formats.jsonload import JsonLoadError, load_file

    try:
        doc = load_file(Path(path), max_bytes=512 * 1024 * 1024, max_depth=64).value
    except JsonLoadError as exc:
        raise UsageError(f"{path}: not a readable JSON report ({exc.message})") from None
    import jsonschema

    from npu_preflight.schemas import load

    try:
        jsonschema.Draft202012Validator(load("report.schema.json")).validate(doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise UsageError(f"{path}: not an npu-preflight report (schema_version 2): {where}: {exc.message}") from None
    return Report.from_dict(doc)


@main.command("check-config")
@click.argument("files", metavar="MODEL_CONFIG...", nargs=-1, required=True)
@click.option("--planning", is_flag=True, help="A partial model_config is a planning question: missing keys are notes.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True)
def check_config(files: tuple[str, ...], planning: bool, fmt: str) -> None:
    """Validate model_config files (JSON, YAML, MindIE-Service config.json) without any weights: the
    schema, unknown keys, rank/world_size, lengths and MindIE's required keys. What a deployment
    repository's pre-commit hook or CI job runs on the configs it commits."""
    import tempfile

    from npu_preflight.context import Context, RunOptions
    from npu_preflight.reports.github import _data, _prop
    from npu_preflight.reports.text import finding_lines
    from npu_preflight.runner import run

    worst = 0
    docs: list[dict[str, Any]] = []
    specs = [s for s in registry().specs if s.id.startswith("MC") and s.id not in ("MC004", "MC005", "MC007")]
    for name in files:
        try:
            mc = _read_model_config(name, ())
        except UsageError as exc:
            worst = max(worst, EXIT_USAGE)
            docs.append({"file": name, "verdict": "unreadable", "error": str(exc), "findings": []})
            if fmt == "text":
                click.echo(f"{name}: {exc}")
            elif fmt == "github":
                click.echo(f"::error file={_prop(name)},title=model_config::{_data(str(exc))}")
            continue
        with tempfile.TemporaryDirectory(prefix="preflight-config-") as empty:
            opts = RunOptions(static=True, full_config=not planning, model_config_path=str(Path(name).resolve()))
            report = run(Context(Path(empty), mc, options=opts, env={}), specs, Policy())
        code = exit_code(report)
        worst = max(worst, code)
        docs.append({"file": name, "verdict": report.verdict, "findings": [f.to_dict() for f in report.findings]})
        if fmt == "text":
            click.echo(f"{name}: {report.verdict_label}")
            for f in report.findings:
                click.echo("\n".join(finding_lines(f, use_color())))
        elif fmt == "github":
            from npu_preflight.locate import key_line, relative_to_workspace

            rel = relative_to_workspace(Path(name)) or name
            for f in report.findings:
                key = (f.location.key or "").removeprefix("model_config.")
                line = key_line(Path(name), key) if key else None
                level = {"error": "error", "warning": "warning"}.get(f.severity.value, "notice")
                where = f"file={_prop(rel)}" + (f",line={line}" if line else "")
                click.echo(f"::{level} {where},title={_prop(f.check_id)}::{_data(f.message)}")
    if fmt == "json":
        click.echo(json.dumps(docs, indent=2, default=str))
    sys.exit(worst)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("root", metavar="ROOT")
@click.option("--out", "out_dir", default="preflight-report", show_default=True, metavar="DIR")
@click.option("--jobs", type=click.IntRange(min=1, max=256), help="Folders checked at once (default: CPUs).")
@click.option("--max-depth", type=click.IntRange(min=0, max=32), default=6, show_default=True)
@click.argument("check_args", nargs=-1, type=click.UNPROCESSED)
def scan(root: str, out_dir: str, jobs: int | None, max_depth: int, check_args: tuple[str, ...]) -> None:
    """Find every weight folder under ROOT (Hugging Face cache snapshots included) and check each,
    several at a time; CHECK_ARGS go to each check (e.g. -- --static --target-device 910B3)."""
    from npu_preflight.many import check_many, find_weight_folders, summary_lines, worst_exit

    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"{root!r} is not a folder")
    folders = find_weight_folders(base.resolve(), max_depth)
    if not folders:
        raise UsageError(f"no weight folder (config.json beside weights) under {root!r}")
    args = [a for a in check_args if a != "--"]
    bad = next((a for a in args if a in ("--out", "--format", "--no-out")), None)
    if bad:
        raise UsageError(f"{bad} is scan's own: each folder's report goes to OUT/<folder>/")
    results = check_many(folders, Path(out_dir), args, jobs or os.cpu_count() or 1)
    click.echo("\n".join(summary_lines(results)))
    click.echo(f"reports: {out_dir}/index.html", err=True)
    sys.exit(worst_exit(results))


@main.command()
@click.argument("reports", metavar="NODE_REPORT.json...", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE", help="Write the cluster report.json here (atomically).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html", "junit", "markdown", "github", "sarif"]),
    default="text",
    show_default=True,
    help="What goes to stdout.",
)
def merge(reports: tuple[str, ...], output: str | None, fmt: str) -> None:
    """Fold the node reports of one multi-node run into one cluster report (verdict = the worst)."""
    from npu_preflight.merge import merge as fold
    from npu_preflight.output import write_atomic

    cluster = fold([_load_report(p) for p in reports], list(reports))
    if output:
        try:
            write_atomic(Path(output), json.dumps(cluster.to_dict(), indent=2, allow_nan=False) + "\n")
        except OSError as exc:
            raise UsageError(f"-o {output!r}: {exc.strerror or exc}") from None
    click.echo(_render(fmt, cluster, color=use_color()))
    sys.exit(exit_code(cluster))


@main.command()
@click.argument("report_path", metavar="REPORT.json")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html", "junit", "markdown", "github", "sarif"]),
    default="text",
    show_default=True,
)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (atomically) instead of stdout.")
def render(report_path: str, fmt: str, output: str | None) -> None:
    """Re-render a stored report.json in any format."""
    from npu_preflight.output import write_atomic

    report = _load_report(report_path)
    text = _render(fmt, report, color=output is None and use_color())
    if output:
        try:
            write_atomic(Path(output), text)
        except OSError as exc:
            raise UsageError(f"-o {output!r}: {exc.strerror or exc}") from None
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("old_path", metavar="OLD.json")
@click.argument("new_path", metavar="NEW.json")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def diff(old_path: str, new_path: str, fmt: str) -> None:
    """Findings added, removed and changed between two reports; exit 1 when NEW is worse."""
    from npu_preflight.reports.diff import compare, render_json, render_text

    d = compare(_load_report(old_path), _load_report(new_path))
    click.echo(render_json(d) if fmt == "json" else render_text(d), nl=False)
    sys.exit(EXIT_NOT_READY if d.worse else EXIT_READY)


@main.command("checks")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_checks(fmt: str) -> None:
    """List every check: id, default severity, phase, title."""
    specs = registry().specs
    if fmt == "json":
        rows = [
            {
                "id": s.id,
                "severity": s.severity.value,
                "phase": s.phase.value,
                "title": s.title,
                "requires": list(s.requires),
            }
            for s in specs
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for s in specs:
        click.echo(f"{s.id:<8} {s.severity.value:<8} {s.phase.value:<12} {s.title}")


@main.command()
@click.argument("check_id")
def explain(check_id: str) -> None:
    """Explain one check: what fails, why it matters, a bad and a good example, the fix."""
    reg = registry()
    spec = reg.get(check_id)
    if spec is None:
        close = reg.suggest(check_id)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see 'npu-preflight checks')"
        raise UsageError(f"unknown check id {check_id!r}{hint}")
    click.echo(f"{spec.id}: {spec.title}")
    click.echo(
        f"severity: {spec.severity.value} · phase: {spec.phase.value}"
        + (f" · needs: {', '.join(spec.requires)}" if spec.requires else "")
    )
    from npu_preflight.doctext import for_terminal

    click.echo(f"rule of: {_BACKEND_WORDS[spec.backend]}")
    if spec.source:
        click.echo(f"source: {spec.source}")
    click.echo("")
    colored = use_color()
    click.echo(for_terminal(spec.doc, color=colored), color=colored)


_BACKEND_WORDS = {
    "any": "every loader (transformers and MindIE alike)",
    "mindie": "MindIE-LLM (its ATB model code, validation and environment)",
    "transformers": "transformers",
    "tensor-parallel": "tensor-parallel runtimes (MindIE ATB, vLLM), each as its code behaves",
    "preflight": "npu-preflight's own plan and sandbox",
    "host": "the host: torch, torch_npu, CANN and the filesystem",
}


#: Options a folder's own check is not given when several are checked (each gets its own).
_NOT_PASSED_ON = {"weights_dirs", "out_dir", "fmt", "no_out", "jobs"}


def _passed_on_args() -> list[str]:
    """The command line's options, as given, for each folder's own ``check`` process."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    args: list[str] = []
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name in _NOT_PASSED_ON or p.name is None:
            continue
        if ctx.get_parameter_source(p.name) in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue
        value = ctx.params.get(p.name)
        flag = p.opts[0]
        if p.is_flag:
            if value:
                args.append(flag)
        elif p.multiple:
            for v in value or ():
                args += [flag, str(v)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def _check_many_and_exit(folders: list[Path], out_dir: str, jobs: int | None, python: str | None) -> None:
    from npu_preflight.many import check_many, summary_lines, worst_exit

    for f in folders:
        if not f.is_dir():
            raise UsageError(f"weights folder {str(f)!r} does not exist or is not a folder")
    args = _passed_on_args()
    results = check_many(folders, Path(out_dir), args, jobs or os.cpu_count() or 1)
    click.echo("\n".join(summary_lines(results)))
    click.echo(f"reports: {out_dir}/index.html", err=True)
    sys.exit(worst_exit(results))


def _policy_file(explicit: str | None) -> Any:
    """The policy file: --config FILE, else the nearest one above the working directory."""
    from npu_preflight.policyfile import discover, load

    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise UsageError(f"--config {explicit!r}: no such file")
        return load(p)
    return discover(Path.cwd())


#: check()'s parameter names → the policy file's keys.
_FILE_KEYS = {
    "fail_on": "fail-on",
    "select": "select",
    "ignore": "ignore",
    "target_device": "target-device",
    "model_config_path": "model-config",
    "device": "device",
    "generator": "generator",
    "timeout": "timeout",
    "memory_limit": "memory-limit",
    "python_path": "python",
}


def _from_file(pf: Any, **given: Any) -> dict[str, Any]:
    """Each setting from the command line when given there, else from the policy file."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    out = dict(given)
    for name, key in _FILE_KEYS.items():
        if key not in pf.values:
            continue
        source = ctx.get_parameter_source(name)
        if source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue
        value = pf.values[key]
        if key in ("select", "ignore"):
            value = ",".join(value)
        elif key in ("model-config", "python"):
            value = pf.resolve_path(key)
        out[name] = value
    return out


_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$")


def _check_nodes(nnodes: int, node_rank: int, endpoint: str | None) -> None:
    """--nnodes/--node-rank/--rdzv-endpoint agree: a usage error names the culprit otherwise."""
    if node_rank >= nnodes:
        raise UsageError(f"--node-rank {node_rank} is not below --nnodes {nnodes}")
    if nnodes > 1 and not endpoint:
        raise UsageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
    if endpoint is not None:
        m = _ENDPOINT.match(endpoint)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise UsageError(f"--rdzv-endpoint {endpoint!r} is not HOST:PORT (port 1-65535)")


def _options_for(
    python_path: str | None, device: str, target_device: str | None, static: bool, planning: bool = False
) -> Any:
    from npu_preflight.context import RunOptions

    _check_target(target_device)
    return RunOptions(
        static=static,
        planning=planning,
        no_init=True,
        device=device,  # type: ignore[arg-type]  # click.Choice guarantees the Literal
        target_device=target_device,
        python=python_path,
    )


@main.command()
@click.option("--python", "python_path", metavar="PATH", help="Interpreter to probe (the deployment's).")
@click.option("--device", type=click.Choice(["auto", "npu", "cuda", "cpu"]), default="auto", show_default=True)
@_model_config_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def env(python_path: str | None, device: str, model_config_path: str | None, sets: tuple[str, ...], fmt: str) -> None:
    """Show the environment and devices (probed in a subprocess), with the ENV findings."""
    import tempfile

    from npu_preflight.context import Context
    from npu_preflight.runner import run

    mc = _read_model_config(model_config_path, sets)
    with tempfile.TemporaryDirectory(prefix="preflight-env-") as empty:
        ctx = Context(Path(empty), mc, options=_options_for(python_path, device, None, False))
        specs = [s for s in registry().specs if s.id.startswith("ENV") or s.id in ("MC004", "MC005")]
        report = run(ctx, specs, Policy())
    if fmt == "json":
        doc = {"environment": report.environment, "findings": [f.to_dict() for f in report.findings]}
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        from npu_preflight.reports.text import environment_lines, finding_lines

        click.echo("\n".join(environment_lines(report.environment or {})))
        if report.findings:
            click.echo("")
        for f in report.findings:
            click.echo("\n".join(finding_lines(f, use_color())))
    sys.exit(exit_code(report))


@main.command()
@click.argument("weights_dir", metavar="WEIGHTS_DIR")
@_model_config_options
@click.option("--target-device", metavar="NAME", help="Plan for a catalog device (e.g. 910B3, 310P3).")
@click.option("--device", type=click.Choice(["auto", "npu", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--python", "python_path", metavar="PATH", help="Interpreter for the probe.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan(
    weights_dir: str,
    model_config_path: str | None,
    sets: tuple[str, ...],
    target_device: str | None,
    device: str,
    python_path: str | None,
    fmt: str,
) -> None:
    """The per-rank memory plan for WEIGHTS_DIR: weights, KV cache, workspace against the device."""
    from npu_preflight.context import Context
    from npu_preflight.runner import run

    weights = _weights_dir(weights_dir)
    mc = _read_model_config(model_config_path, sets)
    options = _options_for(python_path, device, target_device, static=target_device is not None, planning=True)
    ctx = Context(weights, mc, options=options)
    specs = [s for s in registry().specs if s.id.startswith("MEM") or s.id == "ENV009"]
    report = run(ctx, specs, Policy())
    if fmt == "json":
        doc = {"memory": report.memory, "findings": [f.to_dict() for f in report.findings]}
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        from npu_preflight.reports.text import finding_lines, plan_lines

        if report.memory:
            click.echo("\n".join(plan_lines(report.memory)))
        for c in report.checks:
            if c.status.value == "skipped" and c.reason:
                click.echo(f"  ({c.id} skipped: {c.reason})")
        for f in report.findings:
            click.echo("\n".join(finding_lines(f, use_color())))
    sys.exit(exit_code(report))


def _deep_progress(total: int, files: int) -> Callable[[int, int], None]:
    """A stderr progress line (files, bytes, GB/s, ETA) refreshed at most 5 times a second."""

    def line(done_bytes: int, done_files: int, rate: float) -> None:
        eta = (total - done_bytes) / rate if rate else 0
        click.echo(
            f"\r\x1b[Kdeep: {done_files}/{files} files · {done_bytes / 2**30:.1f}/{total / 2**30:.1f} GiB"
            f" · {rate / 1e9:.2f} GB/s · ETA {eta:.0f}s",
            nl=False,
            err=True,
        )

    return _throttled(files, 0.2, line)


def _scan_all(weights: Path, workers: int | None) -> Any:
    """Hash every file of the folder (no tensor decoding), with progress on a tty and clean Ctrl-C."""
    from npu_preflight.context import Context
    from npu_preflight.deep import scan_paths

    ctx = Context(weights)
    items = [
        (ctx.path(e.rel), e.rel, None)
        for e in ctx.listing.entries
        if e.is_file and not e.rel.startswith((".cache/", ".git/"))
    ]
    total = sum(e.size for e in ctx.listing.entries if e.is_file)
    progress = _deep_progress(total, len(items)) if _is_tty(sys.stderr) else None
    scan = scan_paths(items, workers, progress)
    if progress is not None:
        click.echo("\r\x1b[K", nl=False, err=True)
    return scan


@main.command()
@click.argument("weights_dir", metavar="WEIGHTS_DIR")
@click.option(
    "-o",
    "--output",
    default="preflight-manifest.json",
    show_default=True,
    metavar="FILE",
    help="Where the manifest goes (never inside the weights folder).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Parallel readers (default: all cores).")
def manifest(weights_dir: str, output: str, workers: int | None) -> None:
    """Write a manifest of WEIGHTS_DIR: every file, its size and sha256 (the Git LFS oid)."""
    from npu_preflight.manifest import to_manifest, write_manifest
    from npu_preflight.output import write_atomic

    weights = _weights_dir(weights_dir)
    out = _out_dir(output, weights, "-o")
    scan = _scan_all(weights, workers)
    errors = [f for f in scan.files if f.error]
    if errors:
        raise UsageError(f"{errors[0].rel}: {errors[0].error}; no manifest written")
    try:
        write_atomic(out, write_manifest(to_manifest(scan, weights)))
    except OSError as exc:
        raise UsageError(f"-o {output!r}: {exc.strerror or exc}") from None
    click.echo(f"{len(scan.files)} files, {scan.bytes_read:,} bytes → {out}")


@main.command()
@click.argument("weights_dir", metavar="WEIGHTS_DIR")
@click.option(
    "--manifest",
    "manifest_path",
    metavar="FILE|DIR",
    help="A manifest from 'npu-preflight manifest', or a folder of Git LFS pointer files. "
    "Default: the Hugging Face download metadata in the folder.",
)
@click.option("--workers", type=click.IntRange(min=1), help="Parallel readers (default: all cores).")
def verify(weights_dir: str, manifest_path: str | None, workers: int | None) -> None:
    """Compare every file of WEIGHTS_DIR with a manifest, LFS pointers or download metadata (exit 1 on any difference)."""
    from npu_preflight.manifest import ManifestError, compare, hf_download_metadata, read_manifest

    weights = _weights_dir(weights_dir)
    if manifest_path is not None:
        try:
            expected = read_manifest(Path(manifest_path))
        except ManifestError as exc:
            raise UsageError(str(exc)) from None
        complete = not Path(manifest_path).is_dir()
    else:
        expected = hf_download_metadata(weights)
        complete = False
        if not expected:
            raise UsageError(
                "nothing to verify against: give --manifest (no .cache/huggingface/download metadata here)"
            )
    scan = _scan_all(weights, workers)
    mismatches = compare(scan, expected, weights, complete=complete)
    for m in mismatches:
        click.echo(f"{m.kind:<9} {m.message}")
    checked = len([r for r in expected if r in {f.rel for f in scan.files}])
    click.echo(f"{checked} file(s) checked, {len(mismatches)} difference(s)")
    sys.exit(EXIT_NOT_READY if mismatches else EXIT_READY)


@main.command()
def devices() -> None:
    """List the device catalog used by --target-device."""
    from npu_preflight.catalog import catalog

    for d in catalog():
        bf16 = "yes" if d["bf16"] else "no"
        click.echo(
            f"{d['name']:<12} {d['kind']:<5} {d['memory_gib']:>4} GiB  bf16 {bf16:<3}  {', '.join(d.get('aliases', []))}"
        )


__all__ = ["EXIT_NOT_READY", "EXIT_READY", "main", "run"]


def run() -> None:
    """The program (``npu-preflight`` and ``python -m npu_preflight``, through
    ``npu_preflight.__main__.main``) is :func:`main` as click runs it, ended by :func:`end_process`.
    ``main`` itself stays an ordinary click group: the test runner and anyone embedding the CLI
    catch its ``SystemExit`` as usual."""
    try:
        main()
    except SystemExit as exc:
        end_process(exc.code)
    end_process(0)


def end_process(code: str | int | None) -> NoReturn:
    """End the process with exit status ``code`` the way ``sys.exit`` would, minus the interpreter's
    teardown. That teardown frees every object one at a time — a 150k-entry vocabulary, the parsed
    headers, every module — which is 15–30 ms of a 0.1–0.2 s static check (bench/RESULTS.md) and
    changes nothing outside the process. What a normal exit does that is seen outside is done
    first: the atexit handlers run and stdout and stderr are flushed, and a failed flush makes the
    status 120, as it does in CPython. Where that is not all — a code that is not an int, a
    non-daemon thread still running, or a profiler or tracer (cProfile, a debugger) that reports
    once the program returns — this falls back to ``sys.exit``."""
    import atexit
    import threading

    main_thread = threading.main_thread()
    others = [t for t in threading.enumerate() if t is not main_thread and not t.daemon and t.is_alive()]
    if others or threading.current_thread() is not main_thread or sys.getprofile() or sys.gettrace():
        sys.exit(code)
    if code is None:
        code = 0
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = 120
    os._exit(code)


def hook_static() -> None:
    """The pre-commit hook: the static checks of every weight folder whose files changed (the
    changed files are the arguments; each folder once)."""
    folders = sorted({str(Path(a).resolve().parent) for a in sys.argv[1:] if Path(a).exists()})
    if not folders:
        sys.exit(0)
    main(
        ["--color", "never", "check", *folders, "--static", "--no-out"]
        if len(folders) == 1
        else ["--color", "never", "check", *folders, "--static", "--out", os.path.join(".npu-preflight", "hook")]
    )
