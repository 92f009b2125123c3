"""MC: the generator's model_config — schema, cross-field rules, and the MindIE-Service file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from npu_preflight.context import Context
from npu_preflight.errors import Unavailable
from npu_preflight.mconfig import ModelConfig, known_keys, validate
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check


@check(
    "MC001",
    "model_config values satisfy the schema",
    Severity.ERROR,
    backend="mindie",
    source="Ascend/MindIE-LLM mindie_llm/utils/validation.py parse_config, generator_backend.py; "
    "schemas/model_config.schema.json",
)
def schema_valid(ctx: Context) -> Iterator[Hit]:
    """Every key given must have a type and range MindIE accepts (schemas/model_config.schema.json,
    after MindIE's own int() coercion of numeric strings): ``world_size`` 1–1048576, ``rank`` ≥ 0,
    ``backend_type`` atb/ms/torch, ``npu_mem`` -1 or 1–64 … Keys that are missing are MC008's.

    Bad: ``{"backend_type": "pytorch", "world_size": 0}``.
    Good: ``{"backend_type": "atb", "world_size": 2, "rank": 0, "npu_device_id": 0}``.
    Fix: set each key to a value the schema allows.
    """
    for v in validate(ctx.mc, required=False):
        yield Hit(
            v.message,
            f"Set {v.path} to {v.allowed}.",
            Location(key=v.path),
            {"allowed": v.allowed},
        )


@check(
    "MC002",
    "model_config has no unknown keys",
    Severity.WARNING,
    backend="mindie",
    source="schemas/model_config.schema.json (MindIE's generator keys)",
)
def unknown_keys(ctx: Context) -> Iterator[Hit]:
    """Keys the generator does not know are ignored silently — a typo such as ``wrld_size`` leaves
    the real key at its default or missing.

    Bad: ``{"wrld_size": 4}``.
    Good: ``{"world_size": 4}``.
    Fix: correct the key's spelling.
    """
    known = known_keys()
    for key in ctx.mc.keys():
        if key in known or key.startswith("_"):
            continue
        import difflib

        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        yield Hit(
            f"model_config key {key!r} is not a generator key" + (f" (did you mean {close[0]!r}?)" if close else ""),
            f"Rename it to {close[0]!r}." if close else "Remove it, or check the generator's documentation.",
            Location(key=f"model_config.{key}"),
            {"suggestion": close[0] if close else None},
        )


def _int(mc: ModelConfig, key: str) -> int | None:
    v = mc.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@check(
    "MC003",
    "rank and local_rank are below world_size",
    Severity.ERROR,
    backend="mindie",
    source="Ascend/MindIE-LLM mindie_llm/utils/validation.py ('Rank should be in the range of 0 to world_size - 1.')",
)
def ranks_in_range(ctx: Context) -> Iterator[Hit]:
    """MindIE refuses ``rank`` or ``local_rank`` ≥ ``world_size`` ("Rank should be in the range of 0
    to world_size - 1."), after the process has started.

    Bad: ``{"world_size": 2, "rank": 2}``.
    Good: ``{"world_size": 2, "rank": 1}``.
    Fix: ranks count from 0 to world_size − 1.
    """
    mc = ctx.mc
    ws = _int(mc, "world_size")
    if ws is None or ws < 1:
        return
    for key, label in (("rank", "Rank"), ("local_rank", "Local rank")):
        v = _int(mc, key)
        if v is not None and not 0 <= v < ws:
            yield Hit(
                f"{key} {v} is not below world_size {ws}: MindIE fails with '{label} should be in the range of 0 "
                "to world_size - 1.'",
                f"Set {key} to 0…{ws - 1}.",
                Location(key=f"model_config.{key}"),
                {key: v, "world_size": ws},
            )


def visible_device_count(ctx: Context) -> tuple[int, str]:
    """How many NPUs the process will see, and where that number comes from."""
    from npu_preflight.envvars import parse_visible_devices

    raw = ctx.env.get("ASCEND_RT_VISIBLE_DEVICES")
    if raw is not None:
        return parse_visible_devices(raw).effective_count, f"ASCEND_RT_VISIBLE_DEVICES={raw}"
    if ctx.availability("probe") is None and ctx.probe.npu_count is not None:
        return ctx.probe.npu_count, "the probe (torch.npu.device_count())"
    raise Unavailable("the visible device count is unknown: ASCEND_RT_VISIBLE_DEVICES is unset and no NPU probe ran")


@check(
    "MC004",
    "npu_device_id is a visible device",
    Severity.ERROR,
    backend="mindie",
    source="atb_llm/utils/dist.py (torch.npu.set_device retried 12 × 5 s); torch_npu device visibility",
)
def device_id_visible(ctx: Context) -> Iterator[Hit]:
    """``npu_device_id`` indexes the *visible* devices (after ``ASCEND_RT_VISIBLE_DEVICES``), not the
    physical ones. MindIE does not check it: ``torch.npu.set_device`` fails after 12 retries 5 s apart,
    a minute lost ("Set visible device failed, invalid device=6, input visible devices:6").

    Bad: ``ASCEND_RT_VISIBLE_DEVICES=6`` with ``npu_device_id`` 6.
    Good: ``ASCEND_RT_VISIBLE_DEVICES=6`` with ``npu_device_id`` 0 (logical id).
    Fix: use the logical index: 0 … (visible devices − 1).
    """
    mc = ctx.mc
    dev = _int(mc, "npu_device_id")
    if dev is None:
        return
    if ctx.options.device in ("cuda", "cpu"):
        return
    count, source = visible_device_count(ctx)
    if dev >= count:
        yield Hit(
            f"npu_device_id {dev} but only {count} device(s) are visible ({source}); torch.npu.set_device would "
            "fail after a minute of retries",
            f"Use a logical id 0…{max(count - 1, 0)}: ids index the visible devices, not the physical ones.",
            Location(key="model_config.npu_device_id", env="ASCEND_RT_VISIBLE_DEVICES"),
            {"npu_device_id": dev, "visible": count},
        )


@check(
    "MC005",
    "ranks fit on the visible devices",
    Severity.WARNING,
    backend="mindie",
    source="atb_llm/utils/dist.py (one device per rank); RANK_TABLE_FILE server_list",
)
def ranks_vs_devices(ctx: Context) -> Iterator[Hit]:
    """Each rank needs its own device. More ranks than visible devices is fine across several
    nodes, but on one node (a rank table listing a single server, or none) two ranks would share a
    card and run out of memory.

    Bad: ``world_size`` 8 with ``ASCEND_RT_VISIBLE_DEVICES=0,1,2,3`` on one server.
    Good: ``world_size`` 4 with four visible devices.
    Fix: make world_size devices visible, or run across nodes with a rank table.
    """
    mc = ctx.mc
    ws = _int(mc, "world_size")
    if ws is None:
        return
    if ctx.options.device in ("cuda", "cpu"):
        return
    count, source = visible_device_count(ctx)
    if ws <= count:
        return
    servers = None
    if ctx.availability("rank_table") is None and ctx.rank_table is not None:
        servers = len(ctx.rank_table["server_list"])
    single = servers is not None and servers <= 1
    yield Hit(
        f"world_size {ws} but only {count} device(s) are visible on this node ({source})"
        + ("; the rank table lists a single server" if single else "; fine only for a multi-node deployment"),
        "Make world_size devices visible, or deploy across nodes with a rank table.",
        Location(key="model_config.world_size", env="ASCEND_RT_VISIBLE_DEVICES"),
        {"world_size": ws, "visible": count, "servers": servers},
        severity=Severity.ERROR if single else Severity.WARNING,
    )


@check(
    "MC006",
    "max_input_len does not exceed max_seq_len",
    Severity.ERROR,
    backend="mindie",
    source="MindIE-Service config (maxInputTokenLen ≤ maxSeqLen)",
)
def input_within_seq(ctx: Context) -> Iterator[Hit]:
    """A request's input is part of its sequence; ``max_input_len`` > ``max_seq_len`` (MindIE-Service:
    ``maxInputTokenLen`` > ``maxSeqLen``) is refused at start-up.

    Bad: ``{"max_seq_len": 2048, "max_input_len": 4096}``.
    Good: ``{"max_seq_len": 4096, "max_input_len": 2048}``.
    Fix: raise max_seq_len or lower max_input_len.
    """
    mc = ctx.mc
    seq, inp = _int(mc, "max_seq_len"), _int(mc, "max_input_len")
    if seq is not None and inp is not None and inp > seq:
        yield Hit(
            f"max_input_len {inp:,} exceeds max_seq_len {seq:,}",
            "Raise max_seq_len (memory permitting) or lower max_input_len.",
            Location(key="model_config.max_input_len"),
            {"max_input_len": inp, "max_seq_len": seq},
        )


@check(
    "MC007",
    "max_seq_len within max_position_embeddings",
    Severity.WARNING,
    requires=("config",),
    backend="any",
    source="config.json max_position_embeddings / rope_scaling (transformers and MindIE rotary embeddings)",
)
def seq_within_positions(ctx: Context) -> Iterator[Hit]:
    """Sequences longer than the model's ``max_position_embeddings`` run past the positions it was
    trained on: quality collapses unless RoPE scaling is configured.

    Bad: ``max_seq_len`` 32768 for a model with ``max_position_embeddings`` 4096 and no ``rope_scaling``.
    Good: ``max_seq_len`` ≤ 4096, or a ``rope_scaling`` entry that extends it.
    Fix: lower max_seq_len, or configure rope_scaling as the model card says.
    """
    mc = ctx.mc
    seq = _int(mc, "max_seq_len")
    cfg = ctx.text_config
    mpe = cfg.get("max_position_embeddings") or cfg.get("seq_length") or cfg.get("model_max_length")
    if seq is None or not isinstance(mpe, int):
        return
    if seq > mpe:
        scaled = bool(cfg.get("rope_scaling"))
        yield Hit(
            f"max_seq_len {seq:,} exceeds the model's max_position_embeddings {mpe:,}"
            + (" (rope_scaling is configured)" if scaled else " and no rope_scaling is configured"),
            f"Lower max_seq_len to {mpe:,}, or configure rope_scaling per the model card.",
            Location(key="model_config.max_seq_len"),
            {"max_seq_len": seq, "max_position_embeddings": mpe},
            severity=Severity.INFO if scaled else Severity.WARNING,
        )


@check(
    "MC008",
    "the model_config has every key a MindIE deployment needs",
    Severity.ERROR,
    backend="mindie",
    source="Ascend/MindIE-LLM mindie_llm/utils/validation.py parse_config (backend_type, npu_device_id, local_rank, "
    "rank, world_size, trust_remote_code)",
)
def deployment_keys(ctx: Context) -> Iterator[Hit]:
    """MindIE's ``parse_config`` requires ``backend_type``, ``world_size``, ``rank``, ``local_rank``,
    ``npu_device_id`` and ``trust_remote_code`` and fails on the first one missing with
    ``model_config: `X` is required, but not set`` — after the process has started. One finding
    lists every missing key with a snippet to paste. In planning mode (``--static`` or ``plan``) a
    partial model_config asks a planning question (``--set world_size=4 --set max_seq_len=8192``):
    the finding is a note and the verdict follows the plan. A model_config without ``backend_type``
    (a transformers or vLLM deployment) gets the note too.

    Bad: ``{"backend_type": "atb", "world_size": 1, "rank": 0, "npu_device_id": 0}`` on current MindIE.
    Good: the same plus ``"local_rank": 0, "trust_remote_code": false``.
    Fix: add the keys the finding lists (the snippet is a single-rank default; adjust rank and device).
    """
    import json

    mc = ctx.mc
    missing = mc.missing_deployment_keys()
    if not missing:
        return
    snippet = mc.deployment_snippet()
    flags = " ".join(f"--set {k}={json.dumps(v)}" for k, v in snippet.items())
    planning = ctx.planning or not ctx.mindie_rules
    if ctx.planning:
        why = (
            " (planning mode: the plan uses defaults; a deployment would fail with "
            f"'model_config: `{missing[0]}` is required, but not set')"
        )
    elif planning:
        why = " (no backend_type: they matter only for a MindIE deployment)"
    else:
        why = f"; MindIE fails with 'model_config: `{missing[0]}` is required, but not set'"
    yield Hit(
        f"model_config lacks {len(missing)} key(s) a MindIE deployment requires: {', '.join(missing)}{why}",
        f"Add to the model_config: {json.dumps(snippet)} (or {flags}).",
        Location(key=f"model_config.{missing[0]}"),
        {"missing": missing, "snippet": snippet, "planning": planning},
        severity=Severity.INFO if planning else Severity.ERROR,
    )


@check(
    "MC009",
    "the MindIE-Service config is consistent",
    Severity.ERROR,
    backend="mindie",
    source="MindIE-Service conf/config.json BackendConfig/ModelDeployConfig rules",
)
def service_consistent(ctx: Context) -> Iterator[Hit]:
    """Rules operators hit in MindIE-Service's config.json: ``worldSize`` must equal the number of
    devices listed in ``npuDeviceIds``, ``maxSeqLen`` ≥ ``maxInputTokenLen``, and
    ``modelWeightPath`` must exist (and should be the folder being checked).

    Bad: ``"npuDeviceIds": [[0,1,2,3]]`` with ``"worldSize": 8``.
    Good: ``"npuDeviceIds": [[0,1,2,3]]`` with ``"worldSize": 4``.
    Fix: make the device list and worldSize agree; point modelWeightPath at the weights.
    """
    svc = ctx.mc.service
    if svc is None:
        raise Unavailable("the model_config is not a MindIE-Service config.json")
    ids = svc.get("npuDeviceIds")
    ws = svc.get("worldSize")
    if isinstance(ids, list) and ids and isinstance(ids[0], list) and isinstance(ws, int):
        for n, group in enumerate(ids):
            if isinstance(group, list) and len(group) != ws:
                yield Hit(
                    f"npuDeviceIds[{n}] lists {len(group)} device(s) but worldSize is {ws}",
                    "Make worldSize equal the number of devices per instance.",
                    Location(key="BackendConfig.npuDeviceIds"),
                    {"devices": group, "worldSize": ws},
                )
    seq, inp = svc.get("maxSeqLen"), svc.get("maxInputTokenLen")
    if isinstance(seq, int) and isinstance(inp, int) and inp > seq:
        yield Hit(
            f"maxInputTokenLen {inp:,} exceeds maxSeqLen {seq:,}",
            "Raise maxSeqLen or lower maxInputTokenLen.",
            Location(key="BackendConfig.ModelDeployConfig.maxInputTokenLen"),
        )
    wp = svc.get("modelWeightPath")
    if isinstance(wp, str):
        p = Path(wp)
        if not p.is_dir():
            yield Hit(
                f"modelWeightPath {wp!r} does not exist on this host",
                "Point modelWeightPath at the weights folder.",
                Location(key="BackendConfig.ModelDeployConfig.ModelConfig[0].modelWeightPath"),
            )
        elif p.resolve() != ctx.weights_dir.resolve():
            yield Hit(
                f"modelWeightPath {wp!r} is not the folder being checked ({ctx.weights_dir})",
                "Check the folder the service will really load.",
                Location(key="BackendConfig.ModelDeployConfig.ModelConfig[0].modelWeightPath"),
                severity=Severity.WARNING,
            )
