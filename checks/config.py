"""CFG: config.json of the weights folder — readable, and carrying what MindIE needs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from npu_preflight.context import CONFIG_NAME, MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, Context
from npu_preflight.formats.jsonload import JsonLoadError
from npu_preflight.formats.safetensors import FLOAT_DTYPES, TORCH_NAME
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check
from npu_preflight.units import fmt_bytes

MINDIE_DTYPES = ("float16", "bfloat16")

_WHY = {
    "missing": "config.json is missing",
    "unreadable": "config.json cannot be read",
    "not-regular": "config.json is not a regular file",
    "not-utf8": "config.json is not UTF-8 text",
    "invalid": "config.json is not valid JSON",
    "too-large": f"config.json is larger than {fmt_bytes(MAX_CONFIG_BYTES)}",
    "too-deep": f"config.json nests deeper than {MAX_CONFIG_DEPTH} levels",
    "not-object": "config.json is not a JSON object",
}


@check("CFG001", "config.json is present and parses as a JSON object", Severity.ERROR)
def config_readable(ctx: Context) -> Iterator[Hit]:
    """Every loader starts from ``config.json``: MindIE reads the architecture, the dtype and the
    shapes from it, and transformers' ``AutoConfig`` refuses a folder without it.

    Bad: a folder with only ``model.safetensors``, or a config.json truncated mid-copy (``{"model_type": "lla``).
    Good: ``{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16", ...}``.
    Fix: copy config.json from the model's original release, or re-save it with ``model.config.save_pretrained(DIR)``.
    """
    value = ctx.config_load
    if isinstance(value, JsonLoadError):
        yield Hit(
            f"{_WHY.get(value.kind, 'config.json cannot be used')}: {value.message}",
            "Restore config.json from the model's release (it must be a JSON object; MindIE and "
            "transformers both read it first).",
            Location(file=CONFIG_NAME),
            {"kind": value.kind},
        )


@check("CFG002", "config.json declares torch_dtype", Severity.ERROR, requires=("config",))
def torch_dtype_present(ctx: Context) -> Iterator[Hit]:
    """MindIE takes the load dtype from ``config.json -> torch_dtype``; without it the generator init
    fails with ``unsupported type: None`` (``NotImplementedError: `torch_dtype` is only supported for
    type `float16` and `bfloat16` ...``) after the weights have started loading.

    Bad: a config.json with neither ``torch_dtype`` nor ``dtype``.
    Good: ``"torch_dtype": "bfloat16"`` (or ``"float16"`` — see the model's README for what it supports).
    Fix: add ``"torch_dtype"`` with the dtype the weights are stored in.
    """
    cfg = ctx.text_config
    if "torch_dtype" not in cfg and "dtype" not in cfg:
        stored = _stored_float_dtype(ctx)
        suggestion = stored if stored in MINDIE_DTYPES else "float16"
        yield Hit(
            "config.json has no torch_dtype: MindIE's generator init would fail with 'unsupported type: None'",
            f'Add "torch_dtype": "{suggestion}" to config.json'
            + (f" (the tensors are stored as {stored})." if stored else "."),
            Location(file=CONFIG_NAME, key="config.json:torch_dtype"),
            {"stored_dtype": stored},
        )


@check("CFG003", "torch_dtype is not only written as transformers 5's 'dtype'", Severity.ERROR, requires=("config",))
def dtype_alias_only(ctx: Context) -> Iterator[Hit]:
    """transformers 5 writes ``"dtype"`` instead of ``"torch_dtype"`` when it saves a config. MindIE
    reads only ``torch_dtype``, sees none, and fails with ``unsupported type: None``.

    Bad: ``{"dtype": "bfloat16", ...}`` with no ``torch_dtype``.
    Good: ``{"dtype": "bfloat16", "torch_dtype": "bfloat16", ...}``.
    Fix: add ``"torch_dtype"`` with the same value as ``"dtype"``.
    """
    cfg = ctx.text_config
    if "torch_dtype" not in cfg and isinstance(cfg.get("dtype"), str):
        yield Hit(
            f"config.json has dtype={cfg['dtype']!r} but no torch_dtype (transformers 5 writes 'dtype'); "
            "MindIE reads torch_dtype and would fail with 'unsupported type: None'",
            f'Add "torch_dtype": "{cfg["dtype"]}" next to "dtype" in config.json.',
            Location(file=CONFIG_NAME, key="config.json:dtype"),
            {"dtype": cfg["dtype"]},
        )


@check("CFG004", "torch_dtype is float16 or bfloat16", Severity.ERROR, requires=("config",))
def torch_dtype_supported(ctx: Context) -> Iterator[Hit]:
    """MindIE accepts only ``float16`` and ``bfloat16`` (each model a subset); anything else fails the
    init with ``unsupported type: XXX``.

    Bad: ``"torch_dtype": "float32"`` or ``"torch_dtype": "fp16"``.
    Good: ``"torch_dtype": "float16"``.
    Fix: set torch_dtype to float16 or bfloat16 (convert the weights if they are stored otherwise).
    """
    cfg = ctx.text_config
    key = "torch_dtype" if "torch_dtype" in cfg else "dtype" if "dtype" in cfg else None
    if key is None:
        return
    value = cfg[key]
    name = value.removeprefix("torch.") if isinstance(value, str) else value
    if name not in MINDIE_DTYPES:
        yield Hit(
            f"config.json {key} is {value!r}: MindIE's generator init would fail with 'unsupported type: {name}'",
            'Set "torch_dtype" to "float16" or "bfloat16" (check the model README for which it supports); '
            "convert the weights if they are stored in another type.",
            Location(file=CONFIG_NAME, key=f"config.json:{key}"),
            {"value": value, "accepted": list(MINDIE_DTYPES)},
        )


def _stored_float_dtype(ctx: Context) -> str | None:
    """The float dtype holding most tensor bytes, as a torch name; None when unknown."""
    if ctx.availability("tensors") is not None:
        return None
    by_bytes: Counter[str] = Counter()
    for loc in ctx.tensors.values():
        if loc.info.dtype in FLOAT_DTYPES:
            by_bytes[loc.info.dtype] += loc.info.nbytes
    if not by_bytes:
        return None
    return TORCH_NAME[by_bytes.most_common(1)[0][0]]


@check("CFG005", "stored tensor dtypes match torch_dtype", Severity.WARNING, requires=("config", "tensors"))
def stored_dtype_matches(ctx: Context) -> Iterator[Hit]:
    """Tensors stored in another float type than ``torch_dtype`` are converted while loading: fp32
    on disk doubles the bytes read and the host memory needed; bf16 loaded as fp16 loses range
    (values above 65504 become Inf — run ``--deep`` to find them).

    Bad: ``"torch_dtype": "float16"`` over BF16 tensors.
    Good: ``"torch_dtype": "bfloat16"`` over BF16 tensors.
    Fix: set torch_dtype to the stored type, or convert the weights to the declared one.
    """
    declared = ctx.declared_dtype
    if declared not in MINDIE_DTYPES:
        return
    counts: Counter[str] = Counter()
    size: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for name, loc in ctx.tensors.items():
        dt = loc.info.dtype
        if dt in FLOAT_DTYPES:
            counts[dt] += 1
            size[dt] += loc.info.nbytes
            examples.setdefault(dt, name)
    total = sum(size.values())
    for dt, n in sorted(counts.items()):
        torch_name = TORCH_NAME[dt]
        if torch_name == declared:
            continue
        share = size[dt] / total if total else 0.0
        if dt in ("F32", "F64"):
            loaded = size[dt] * 2 // (4 if dt == "F32" else 8)
            consequence = (
                f"they are converted while loading: {fmt_bytes(size[dt])} read from disk and held "
                f"in host memory for {fmt_bytes(loaded)} on the device"
            )
        elif dt == "BF16" and declared == "float16":
            consequence = "bfloat16 values above 65504 become Inf in float16 (run with --deep to scan them)"
        else:
            consequence = "they are converted while loading, with float16's narrower precision or range"
        yield Hit(
            f"{n} tensor(s) ({fmt_bytes(size[dt])}, {share:.0%} of float bytes) are stored as {torch_name} "
            f"but config.json torch_dtype is {declared}; {consequence}",
            f'Set "torch_dtype" to "{torch_name}" if that is what the model was trained in, or convert '
            f"the weights to {declared}.",
            Location(file=ctx.tensors[examples[dt]].file, tensor=examples[dt], key="config.json:torch_dtype"),
            {"stored": torch_name, "declared": declared, "tensors": n, "bytes": size[dt]},
            severity=Severity.WARNING if share >= 0.05 else Severity.INFO,
        )


@check("CFG006", "config.json names model_type and architectures", Severity.ERROR, requires=("config",))
def model_identity(ctx: Context) -> Iterator[Hit]:
    """``model_type`` selects the model class in transformers (``AutoConfig``) and the model family
    in MindIE; ``architectures`` names the class to instantiate.

    Bad: a config.json with only shapes (``hidden_size``, ``num_hidden_layers``) and no ``model_type``.
    Good: ``"model_type": "llama", "architectures": ["LlamaForCausalLM"]``.
    Fix: add both keys from the model's original config.json.
    """
    cfg = ctx.config
    if not isinstance(cfg.get("model_type"), str) or not cfg.get("model_type"):
        yield Hit(
            "config.json has no model_type: transformers' AutoConfig and MindIE cannot tell which model this is",
            'Add "model_type" (e.g. "llama", "qwen2") from the original release.',
            Location(file=CONFIG_NAME, key="config.json:model_type"),
        )
    arch = cfg.get("architectures")
    if not (isinstance(arch, list) and arch and all(isinstance(a, str) for a in arch)):
        yield Hit(
            "config.json has no architectures list: the loader cannot pick the model class",
            'Add "architectures": ["<ModelClass>ForCausalLM"] from the original release.',
            Location(file=CONFIG_NAME, key="config.json:architectures"),
            severity=Severity.WARNING,
        )


#: model_type values whose MindIE/ATB implementation accepts only float16 (FACTS.md §1; qwen2 from
#: models/qwen2/causal_qwen2.py — unverified for other releases).
FP16_ONLY = frozenset({"qwen2"})


@check("CFG007", "the model family accepts the dtype on MindIE", Severity.WARNING, requires=("config",))
def family_dtype(ctx: Context) -> Iterator[Hit]:
    """Some MindIE (ATB) model implementations accept only float16 and raise ``unsupported type:
    bfloat16`` from the constructor (e.g. qwen2's ``causal_qwen2.py``; which families varies by
    release, so this is a warning).

    Bad: a qwen2 folder with ``"torch_dtype": "bfloat16"`` deployed with ``backend_type`` atb.
    Good: ``"torch_dtype": "float16"`` for that family (the model README lists what it supports).
    Fix: set torch_dtype to float16 and check for overflow with --deep.
    """
    if ctx.model_config is None or ctx.model_config.backend_type != "atb":
        return
    mt = ctx.text_config.get("model_type")
    if mt in FP16_ONLY and ctx.declared_dtype == "bfloat16":
        yield Hit(
            f"model_type {mt!r} runs only in float16 on MindIE's ATB backend; bfloat16 fails with "
            "'unsupported type: bfloat16'",
            'Set "torch_dtype": "float16" (run --deep to check the values fit fp16).',
            Location(file="config.json", key="config.json:torch_dtype"),
            {"model_type": mt},
        )
