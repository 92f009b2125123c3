"""SEC: would loading this folder run someone's code, or trust files anyone can swap?"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from npu_preflight.context import Context
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check

_CROSS_REPO = re.compile(r"^[\w.\-]+/[\w.\-]+--")
_CONFIG_LIKE = (".json", ".jinja", ".model", ".txt", ".py", ".tiktoken")


@check(
    "SEC001",
    "every pickle holds only what a tensor checkpoint needs",
    Severity.ERROR,
    backend="any",
    source="pickle protocol (CPython pickletools opcodes); torch.load weights_only allowlist",
)
def pickle_globals(ctx: Context) -> Iterator[Hit]:
    """Loading a pickle (``pytorch_model.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``, ``.npy``
    object arrays …) runs whatever its opcodes name. Every such file — by name, by the
    ``pytorch_model.bin.index.json`` that sends ``torch.load`` to it, or by its first bytes — is
    decoded to the end by a simulation of the unpickler (never unpickled): every global it resolves
    must be one a checkpoint needs (torch's ``_rebuild_*`` helpers, storages, dtypes,
    ``OrderedDict``); calling anything else, or a stream that cannot be decoded to its ``STOP``, is
    an error. Zip members are scanned whatever their name, from their local headers, so tampered
    flags, CRCs and hidden members do not hide a payload.

    Bad: ``archive/data.pkl`` resolving ``os.system``; a protocol-0 stream ``(S'touch x'\nios\nsystem\n.``.
    Good: only ``torch._utils._rebuild_tensor_v2``, ``torch.BFloat16Storage``, ``collections.OrderedDict``.
    Fix: do not load the file; get safetensors weights from a trusted source.
    """
    for rel, res in ctx.pickle_scans.items():
        for rep in res.pickles:
            for mod, name in rep.unsafe:
                yield Hit(
                    f"{rep.member}: the pickle imports {mod}.{name}, which a tensor checkpoint never needs — loading "
                    "this file would run it",
                    "Do not load this file (not even with torch.load); use safetensors weights from a trusted source.",
                    Location(file=rel, key=rep.member),
                    {"global": f"{mod}.{name}", "member": rep.member},
                )
            for call in dict.fromkeys(rep.calls):
                yield Hit(
                    f"{rep.member}: {call} — loading this file would run code no tensor checkpoint needs",
                    "Do not load this file; use safetensors weights from a trusted source.",
                    Location(file=rel, key=rep.member),
                    {"pattern": call, "member": rep.member},
                )
            if rep.error and rep.required:
                yield Hit(
                    f"{rep.member}: the pickle cannot be shown safe: it cannot be decoded to its end ({rep.error}); "
                    "an unpickler would run whatever comes before the break",
                    "Do not load this file; re-download it from a trusted source, or use safetensors.",
                    Location(file=rel, key=rep.member),
                    {"error": rep.error, "member": rep.member},
                )
        for note in res.notes:
            unreadable = note.startswith("unreadable")
            yield Hit(
                f"{rel}: {note}" + (" — it cannot be shown safe" if unreadable else ""),
                "Make the file readable and check again."
                if unreadable
                else "Treat the file as suspicious: regular torch checkpoints do not look like this.",
                Location(file=rel),
                severity=Severity.ERROR if unreadable else Severity.WARNING,
            )


def _auto_maps(ctx: Context) -> Iterator[tuple[str, str, str]]:
    """(file, class key, reference) for every auto_map entry."""
    sources: list[tuple[str, Any]] = []
    if ctx.availability("config") is None:
        sources.append(("config.json", ctx.config.get("auto_map")))
    tc = ctx.json_load("tokenizer_config.json")
    if isinstance(tc, dict):
        sources.append(("tokenizer_config.json", tc.get("auto_map")))
    for file, amap in sources:
        if not isinstance(amap, dict):
            continue
        for key, ref in amap.items():
            refs = ref if isinstance(ref, list) else [ref]
            for r in refs:
                if isinstance(r, str):
                    yield file, str(key), r


def _builtin_class(ctx: Context, file: str, key: str) -> str | None:
    """Why transformers needs no folder code for this auto_map entry (None: it does).

    transformers uses its own class when it has one and ``trust_remote_code`` is not set
    (``resolve_trust_remote_code`` with local code available): a built-in ``model_type`` for the
    model classes, a built-in ``tokenizer_class`` for AutoTokenizer."""
    from npu_preflight.knowledge import builtin_entry, transformers_table, transformers_version

    version = transformers_version()
    if key == "AutoTokenizer" or file == "tokenizer_config.json":
        tc = ctx.json_load("tokenizer_config.json")
        cls = tc.get("tokenizer_class") if isinstance(tc, dict) else None
        known = set(transformers_table()["tokenizer_classes"])
        if isinstance(cls, str) and (cls in known or cls.removesuffix("Fast") in known):
            return f"tokenizer_class {cls!r} is built into transformers {version}"
        return None
    if ctx.availability("config") is not None:
        return None
    mt = ctx.config.get("model_type")
    if isinstance(mt, str) and builtin_entry(mt) is not None:
        return f"model_type {mt!r} is built into transformers {version}"
    return None


@check(
    "SEC002",
    "remote code (auto_map) is needed only where no built-in class exists",
    Severity.ERROR,
    backend="any",
    source="transformers dynamic_module_utils.resolve_trust_remote_code; MindIE-LLM atb_llm/models/__init__.py get_model",
)
def remote_code(ctx: Context) -> Iterator[Hit]:
    """``auto_map`` in config.json or tokenizer_config.json points at Python files shipped with the
    weights. transformers runs them only with ``trust_remote_code``, and without it uses its own
    class when it has one: a folder whose ``model_type`` (or ``tokenizer_class``) is built into
    transformers loads without remote code — DeepSeek-V3's release carries an auto_map and needs
    none. MindIE's ATB backend never reads config.json's auto_map (it picks its own model code by
    ``model_type``); it loads the tokenizer through transformers with the model_config's
    ``trust_remote_code``. So the error is only for code that is needed and not allowed; the
    ``org/repo--module.Class`` form fetches code from another repository at load time.

    Bad: ``"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}`` with a model_type
    transformers does not know, and trust_remote_code false.
    Good: no auto_map, a built-in model_type, or reviewed local code with trust_remote_code true.
    Fix: prefer a natively supported architecture; otherwise review the .py files and set trust_remote_code.
    """
    allowed = ctx.trust_remote_code
    atb = ctx.backend == "mindie-atb"
    for file, key, ref in _auto_maps(ctx):
        loc = Location(file=file, key=f"{file}:auto_map.{key}")
        builtin = _builtin_class(ctx, file, key)
        model_class = file == "config.json" and key != "AutoTokenizer"
        if atb and model_class:
            yield Hit(
                f"{file} auto_map {key} → {ref!r} is not used by MindIE's ATB backend (it runs its own model "
                "code for the model_type)",
                "Nothing to do for MindIE.",
                loc,
                {"ref": ref, "needed": False},
                severity=Severity.INFO,
            )
            continue
        if builtin is not None and not allowed:
            yield Hit(
                f"{file} auto_map {key} → {ref!r} is not needed: {builtin} and loads without trust_remote_code",
                "Nothing to do; the folder's code does not run.",
                loc,
                {"ref": ref, "needed": False},
                severity=Severity.INFO,
            )
        elif _CROSS_REPO.match(ref):
            yield Hit(
                f"{file} auto_map {key} → {ref!r} pulls code from another repository at load time",
                "Vendor and review that code locally, or use a model whose classes ship with transformers.",
                loc,
                {"ref": ref, "needed": builtin is None},
            )
        elif builtin is not None:
            yield Hit(
                f"{file} auto_map {key} → {ref!r}: {builtin}, but trust_remote_code is enabled, so the "
                "folder's code runs instead of the built-in class",
                "Turn trust_remote_code off unless the folder's code is wanted (and reviewed).",
                loc,
                {"ref": ref, "needed": False},
                severity=Severity.WARNING,
            )
        elif not allowed:
            yield Hit(
                f"{file} auto_map {key} → {ref!r} needs trust_remote_code (transformers has no built-in class for "
                "it), which is not enabled: the init would fail",
                "Review the folder's .py files, then set model_config trust_remote_code true (or --trust-remote-code).",
                loc,
                {"ref": ref, "needed": True},
            )
        else:
            yield Hit(
                f"{file} auto_map {key} → {ref!r}: the folder's code will run (trust_remote_code is enabled)",
                "Make sure the .py files in the folder were reviewed.",
                loc,
                {"ref": ref, "needed": True},
                severity=Severity.WARNING,
            )


@check(
    "SEC003",
    "no Python files in the weights folder",
    Severity.WARNING,
    backend="any",
    source="transformers trust_remote_code (runs the folder's .py files)",
)
def python_files(ctx: Context) -> Iterator[Hit]:
    """``*.py`` files in a weight folder are code that ``trust_remote_code`` (or a careless import)
    runs with the service's rights.

    Bad: ``modeling_custom.py`` next to the weights.
    Good: weights, configs and tokenizer files only.
    Fix: review the code, or use a natively supported architecture and delete it.
    """
    for e in ctx.listing.entries:
        if e.rel.endswith((".py", ".pyc", ".so")) and not e.is_dir:
            yield Hit(
                f"{e.rel} is code inside the weights folder",
                "Review it before enabling trust_remote_code, or remove it.",
                Location(file=e.rel),
            )


def _hf_cache_link(ctx: Context, target: Path) -> bool:
    """A Hugging Face cache snapshot link (``snapshots/<rev>/f`` → ``../../blobs/<sha>``)."""
    parts = target.parts
    return "blobs" in parts and any(p == "snapshots" for p in ctx.weights_dir.resolve().parts)


@check(
    "SEC004",
    "no symlink leaves the folder",
    Severity.ERROR,
    backend="any",
    source="MindIE file_utils (no symlinks); Hugging Face cache layout (snapshots → blobs)",
)
def symlinks(ctx: Context) -> Iterator[Hit]:
    """A symlink pointing outside the folder makes the loader read files someone else controls.
    Hugging Face cache snapshots link into the same cache's blobs (a warning: MindIE's file check
    rejects every symlink unless ``MINDIE_CHECK_INPUTFILES_PERMISSION=0``).

    Bad: ``model.safetensors -> /tmp/model.safetensors``.
    Good: regular files (``huggingface-cli download --local-dir DIR`` writes them).
    Fix: copy the real files into the folder.
    """
    root = ctx.weights_dir.resolve()
    for e in ctx.listing.entries:
        if not e.is_link:
            continue
        try:
            target = ctx.path(e.rel).resolve()
        except (OSError, RuntimeError):
            yield Hit(f"{e.rel} is a symlink loop", "Replace it with the real file.", Location(file=e.rel))
            continue
        inside = target == root or root in target.parents
        if _hf_cache_link(ctx, target):
            yield Hit(
                f"{e.rel} links into the Hugging Face cache ({e.link_target}); MindIE's file check rejects symlinks",
                "Download with --local-dir to get regular files, or set MINDIE_CHECK_INPUTFILES_PERMISSION=0 knowingly.",
                Location(file=e.rel),
                {"target": str(target)},
                severity=Severity.WARNING,
            )
        elif not inside:
            yield Hit(
                f"{e.rel} is a symlink to {target}, outside the weights folder",
                "Copy the real file into the folder.",
                Location(file=e.rel),
                {"target": str(target)},
            )


def _readable(path: Path) -> bool:
    """Whether this process (its effective user) can open the file — tried, not inferred."""
    try:  # O_NONBLOCK: opening a FIFO for reading must not wait for a writer
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        return True
    except OSError:
        return False


@check(
    "SEC005",
    "no file writable by others or unreadable",
    Severity.ERROR,
    backend="any",
    source="POSIX permissions; MindIE file_utils (no group/other write)",
)
def permissions(ctx: Context) -> Iterator[Hit]:
    """A weight or config file anyone on the host can write can be swapped under the service (and
    MindIE refuses it); a file the current user cannot read fails the load.

    Bad: ``-rw-rw-rw- model.safetensors``.
    Good: ``-rw-r----- model.safetensors`` owned by the service user.
    Fix: ``chmod o-w`` (and make the files readable by the service user).
    """
    for rel in ctx.listing.unreadable:
        yield Hit(
            f"folder {rel} cannot be listed by the current user; its files were not checked",
            "Make the folder readable and searchable (r-x) by the user that runs the service.",
            Location(file=rel),
        )
    for e in ctx.listing.entries:
        if e.is_link:
            continue
        if e.mode & stat.S_IWOTH and not (e.is_dir and e.mode & stat.S_ISVTX):
            yield Hit(
                f"{e.rel or '.'} is writable by any user (mode {stat.filemode(e.mode)})",
                f"chmod o-w {e.rel}",
                Location(file=e.rel),
                {"mode": oct(e.mode & 0o7777)},
            )
        if e.is_file and not _readable(ctx.path(e.rel)):
            yield Hit(
                f"{e.rel} cannot be read by the current user (mode {stat.filemode(e.mode)}, owner uid {e.uid})",
                "Make the file readable by the user that runs the service.",
                Location(file=e.rel),
            )


@check(
    "SEC006",
    "files pass MindIE's own file-safety rules",
    Severity.WARNING,
    backend="mindie",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/utils/file_utils.py check_file_safety / check_path_permission",
)
def mindie_file_rules(ctx: Context) -> Iterator[Hit]:
    """mindie_llm's ``file_utils`` checks the files it opens: owner is the current user or root (or
    shares its group), not writable by group or others ("The file should not be writable by group
    users."), no symlinks, configs ≤ 10 MB; atb_llm's stricter check also refuses config files others
    can read ("Check Other group permission failed: Current permission is 4, but required no greater
    than 0" — which files it applies to varies by release, so that one is a note).
    ``MINDIE_CHECK_INPUTFILES_PERMISSION=0`` switches the checks off.

    Bad: ``-rw-rw-r-- config.json`` owned by another user.
    Good: ``-rw-r----- config.json`` owned by the service user.
    Fix: ``chmod g-w,o-rwx`` the config files and ``chown`` the folder to the service user.
    """
    if ctx.env.get("MINDIE_CHECK_INPUTFILES_PERMISSION") == "0":
        return
    uid, gid = os.geteuid(), os.getgid()
    files = [e for e in ctx.listing.entries if e.is_file]
    group_w = [e for e in files if e.mode & stat.S_IWGRP]
    if group_w:
        e = group_w[0]
        yield Hit(
            f"{len(group_w)} file(s) are writable by their group (e.g. {e.rel}, mode {stat.filemode(e.mode)}); MindIE "
            "fails with 'The file should not be writable by group users.'",
            f"chmod g-w {' '.join(x.rel for x in group_w[:5])}{' …' if len(group_w) > 5 else ''}",
            Location(file=e.rel),
            {"files": [x.rel for x in group_w[:50]]},
        )
    foreign = [e for e in files if not (uid == 0 or e.uid == uid or e.gid == gid)]
    if foreign:
        yield Hit(
            f"{len(foreign)} file(s) are owned by another user outside your group (e.g. {foreign[0].rel}, uid "
            f"{foreign[0].uid}); MindIE's owner check refuses them",
            "chown the folder to the user that runs the service.",
            Location(file=foreign[0].rel),
        )
    for e in files:
        if (
            e.top_level
            and e.rel in ("config.json", "generation_config.json", "tokenizer_config.json")
            and e.size > 10 * 1024 * 1024
        ):
            yield Hit(
                f"{e.rel} is {e.size:,} bytes; MindIE opens config files up to 10 MB",
                "Shrink it.",
                Location(file=e.rel),
            )
    readable = [e for e in files if e.top_level and e.rel.endswith(_CONFIG_LIKE) and e.mode & 0o007]
    if readable:
        e = readable[0]
        yield Hit(
            f"{len(readable)} config file(s) are readable by others (e.g. {e.rel}, mode {stat.filemode(e.mode)}); "
            f"atb_llm's strict check may fail with 'Check Other group permission failed: Current permission is "
            f"{e.mode & 0o007}, but required no greater than 0'",
            "chmod o-rwx the config files if your MindIE release enforces it.",
            Location(file=e.rel),
            severity=Severity.INFO,
        )
    counts: dict[str, int] = {}
    for e in ctx.listing.entries:
        parent = e.rel.rsplit("/", 1)[0] if "/" in e.rel else "."
        counts[parent] = counts.get(parent, 0) + 1
    for d, n in counts.items():
        if n > 1024:
            yield Hit(
                f"{d} holds {n} entries; MindIE's check allows 1024 per directory",
                "Move unrelated files out.",
                Location(file=d),
            )


#: Names a loader opens: a FIFO or a device under one of these hangs or misleads it.
_LOADED_SUFFIXES = (".safetensors", ".json", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".model", ".jinja", ".txt")


@check(
    "SEC007",
    "only regular files, folders and links in the folder",
    Severity.ERROR,
    backend="any",
    source="POSIX file types (a FIFO blocks its reader)",
)
def special_files(ctx: Context) -> Iterator[Hit]:
    """A FIFO, device or socket in a weights folder is never a model file. Opened by a loader, a FIFO
    blocks until someone writes to it (the service hangs at start-up, forever) and ``/dev/zero``
    never ends; the tool itself opens only regular files, so these are reported instead of read.

    Bad: ``model.safetensors.index.json`` as a named pipe (``mkfifo``).
    Good: regular files.
    Fix: replace it with the real file.
    """
    from npu_preflight.formats.files import file_kind

    for e in ctx.listing.entries:
        if e.is_file or e.is_dir or e.is_link:
            continue
        loaded = e.top_level and e.rel.endswith(_LOADED_SUFFIXES)
        yield Hit(
            f"{e.rel} is {file_kind(e.mode)}, not a regular file"
            + ("; a loader that opens it would hang or read garbage" if loaded else ""),
            f"Replace {e.rel} with the real file, or remove it.",
            Location(file=e.rel),
            {"mode": oct(e.mode)},
            severity=Severity.ERROR if loaded else Severity.WARNING,
        )
    for e in ctx.listing.entries:
        if e.is_link and e.top_level and e.rel.endswith(_LOADED_SUFFIXES):
            try:
                st = os.stat(ctx.path(e.rel))
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
                yield Hit(
                    f"{e.rel} is a link to {file_kind(st.st_mode)} ({e.link_target}); a loader that opens it would "
                    "hang or read garbage",
                    f"Replace {e.rel} with the real file.",
                    Location(file=e.rel),
                    {"target": e.link_target},
                )
