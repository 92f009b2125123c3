"""CFG: config.json of the weights folder — readable, and carrying what MindIE needs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from npu_preflight.context import CONFIG_NAME, MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, Context
from npu_preflight.errors import Unavailable
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


@check(
    "CFG001",
    "config.json is present and parses as a JSON object",
    Severity.ERROR,
    backend="any",
    source="transformers AutoConfig.from_pretrained; MindIE atb_llm/models/base/model_utils.py safe_get_config_dict",
)
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


@check(
    "CFG002",
    "config.json declares torch_dtype",
    Severity.ERROR,
    requires=("config",),
    backend="mindie",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/runner/model_runner.py (torch_dtype only float16/bfloat16)",
)
def torch_dtype_present(ctx: Context) -> Iterator[Hit]:
    """MindIE takes the load dtype from ``config.json -> torch_dtype``; without it the generator init
    fails with ``unsupported type: None`` (``NotImplementedError: `torch_dtype` is only supported for
    type `float16` and `bfloat16` ...``) after the weights have started loading.

    Bad: a config.json with neither ``torch_dtype`` nor ``dtype``.
    Good: ``"torch_dtype": "bfloat16"`` (or ``"float16"`` — see the model's README for what it supports).
    Fix: add ``"torch_dtype"`` with the dtype the weights are stored in.
    """
    if not ctx.mindie_rules:
        raise Unavailable("a MindIE rule; the model_config names no MindIE backend_type")
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


@check(
    "CFG003",
    "torch_dtype is not only written as transformers 5's 'dtype'",
    Severity.ERROR,
    requires=("config",),
    backend="mindie",
    source="transformers 5 PretrainedConfig.to_dict writes dtype; MindIE reads torch_dtype (atb_llm/runner/model_runner.py)",
)
def dtype_alias_only(ctx: Context) -> Iterator[Hit]:
    """transformers 5 writes ``"dtype"`` instead of ``"torch_dtype"`` when it saves a config. MindIE
    reads only ``torch_dtype``, sees none, and fails with ``unsupported type: None``.

    Bad: ``{"dtype": "bfloat16", ...}`` with no ``torch_dtype``.
    Good: ``{"dtype": "bfloat16", "torch_dtype": "bfloat16", ...}``.
    Fix: add ``"torch_dtype"`` with the same value as ``"dtype"``.
    """
    if not ctx.mindie_rules:
        raise Unavailable("a MindIE rule; the model_config names no MindIE backend_type")
    cfg = ctx.text_config
    if "torch_dtype" not in cfg and isinstance(cfg.get("dtype"), str):
        yield Hit(
            f"config.json has dtype={cfg['dtype']!r} but no torch_dtype (transformers 5 writes 'dtype'); "
            "MindIE reads torch_dtype and would fail with 'unsupported type: None'",
            f'Add "torch_dtype": "{cfg["dtype"]}" next to "dtype" in config.json.',
            Location(file=CONFIG_NAME, key="config.json:dtype"),
            {"dtype": cfg["dtype"]},
        )


@check(
    "CFG004",
    "torch_dtype is float16 or bfloat16",
    Severity.ERROR,
    requires=("config",),
    backend="mindie",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/runner/model_runner.py",
)
def torch_dtype_supported(ctx: Context) -> Iterator[Hit]:
    """MindIE accepts only ``float16`` and ``bfloat16`` (each model a subset); anything else fails the
    init with ``unsupported type: XXX``.

    Bad: ``"torch_dtype": "float32"`` or ``"torch_dtype": "fp16"``.
    Good: ``"torch_dtype": "float16"``.
    Fix: set torch_dtype to float16 or bfloat16 (convert the weights if they are stored otherwise).
    """
    if not ctx.mindie_rules:
        raise Unavailable("a MindIE rule; the model_config names no MindIE backend_type")
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


@check(
    "CFG005",
    "stored tensor dtypes match torch_dtype",
    Severity.WARNING,
    requires=("config", "tensors"),
    backend="any",
    source="transformers from_pretrained (casts to torch_dtype); safetensors dtypes",
)
def stored_dtype_matches(ctx: Context) -> Iterator[Hit]:
    """Tensors stored in another float type than ``torch_dtype`` are converted while loading: fp32
    on disk doubles the bytes read and the host memory needed; bf16 loaded as fp16 loses range
    (values above 65504 become Inf — run ``--deep`` to find them).

    The scales and offsets of quantised weights (FP8 ``weight_scale_inv``, W8A8 ``deq_scale``…) are
    stored in float32 on purpose and are not counted; CFG009 describes quantised weights.

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
    aux = ctx.quantization.aux if ctx.availability("quantization") is None else frozenset()
    for name, loc in ctx.tensors.items():
        dt = loc.info.dtype
        if dt in FLOAT_DTYPES and name not in aux:
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


@check(
    "CFG006",
    "config.json names model_type and architectures",
    Severity.ERROR,
    requires=("config",),
    backend="any",
    source="transformers AutoConfig (model_type), MindIE atb_llm/models/__init__.py get_model (model_type)",
)
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


def _looks_like_qwen15(cfg: dict[str, Any]) -> str | None:
    """Why a qwen2-type config.json looks like a Qwen1.5 release (None: it does not).

    Qwen1.5 shipped as model_type qwen2 with every head its own KV head and transformers 4.37;
    Qwen2 and Qwen2.5 use grouped KV heads (Qwen1.5-32B is the GQA exception) and later transformers.
    A heuristic: the finding says so."""
    heads, kv = cfg.get("num_attention_heads"), cfg.get("num_key_value_heads")
    tv = cfg.get("transformers_version")
    old = isinstance(tv, str) and tv.startswith(("4.37", "4.38", "4.39"))
    if isinstance(heads, int) and heads == kv and old:
        return f"num_key_value_heads equals num_attention_heads ({heads}) and transformers_version is {tv}"
    return None


@check(
    "CFG007",
    "the model family accepts the dtype on MindIE",
    Severity.WARNING,
    requires=("config",),
    backend="mindie",
    source="Ascend/MindIE-LLM examples/atb_models/examples/models/*/README.md (FP16/BF16 columns); "
    "atb_llm/models/qwen2/causal_qwen2.py; schemas/mindie_models.json",
)
def family_dtype(ctx: Context) -> Iterator[Hit]:
    """MindIE's model READMEs say which dtypes each family runs on the Atlas 800I A2 (910B): Qwen2
    and Qwen2.5 run bfloat16 there (only bfloat16, in fact); Qwen3-MoE has no float16 row; Phi-3,
    Mixtral, Baichuan2, InternLM2.5, ChatGLM3, Bloom and MiniCPM list BF16 as unsupported. A dtype
    the README does not list is a warning (untested by the vendor, may fail or lose accuracy). The
    Qwen1.5-era releases (model_type qwen2 too) are not listed for BF16; they are recognised by a
    heuristic. Only for ``backend_type`` atb.

    Bad: a Mixtral folder with ``"torch_dtype": "bfloat16"`` on the 800I A2.
    Good: ``"torch_dtype": "float16"`` for Mixtral; ``bfloat16`` for Qwen2.5.
    Fix: set torch_dtype to the dtype the model's MindIE README lists (run --deep to check fp16 range).
    """
    from npu_preflight.knowledge import mindie_bf16, mindie_folder

    if ctx.backend != "mindie-atb":
        return
    cfg = ctx.text_config
    mt = cfg.get("model_type")
    dtype = ctx.declared_dtype
    if not isinstance(mt, str) or dtype not in MINDIE_DTYPES:
        return
    folder = mindie_folder(mt, ctx.config)
    entry = mindie_bf16(folder)
    loc = Location(file="config.json", key="config.json:torch_dtype")
    if entry is None:
        return
    src = str(entry.get("source", ""))
    if dtype == "bfloat16" and entry.get("value") is False:
        yield Hit(
            f"MindIE's README for {folder} lists BF16 as unsupported on the Atlas 800I A2; this folder declares bfloat16",
            'Set "torch_dtype": "float16" (run --deep to check the values fit fp16), or confirm bf16 on your MindIE release.',
            loc,
            {"model_type": mt, "folder": folder, "source": src},
        )
    elif dtype == "bfloat16" and folder == "qwen2" and (why := _looks_like_qwen15(cfg)):
        yield Hit(
            f"this qwen2 folder looks like a Qwen1.5 release ({why}); MindIE lists bf16 only for Qwen2/2.5, and its "
            "non-flash qwen2 path accepts only float16 ('unsupported type: bfloat16')",
            'If it is Qwen1.5, set "torch_dtype": "float16" (run --deep to check the values fit fp16).',
            loc,
            {"model_type": mt, "heuristic": why, "source": src},
        )
    elif dtype == "float16" and entry.get("fp16") is False:
        yield Hit(
            f"MindIE's README for {folder} lists FP16 as unsupported; this folder declares float16",
            'Set "torch_dtype": "bfloat16" as released.',
            loc,
            {"model_type": mt, "folder": folder, "source": src},
        )


@check(
    "CFG008",
    "MindIE has an implementation for the model_type",
    Severity.WARNING,
    requires=("config",),
    backend="mindie",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/models/__init__.py get_model / router_model_type; "
    "the atb_llm/models folders on the host (probe) or in schemas/mindie_models.json",
)
def mindie_implements(ctx: Context) -> Iterator[Hit]:
    """MindIE's ``get_model`` lowercases ``model_type``, maps a few aliases (``deepseek_v3`` →
    ``deepseekv2``, ``qwen2_5_vl`` → ``qwen2_vl`` …) and raises ``NotImplementedError: unsupported
    model type: X`` unless ``atb_llm/models/X`` exists. When the probe finds MindIE's atb_llm on the
    host, its folders are the list (an error: this host's MindIE cannot serve the folder); otherwise
    the snapshots in schemas/mindie_models.json (a warning: another release may differ — gemma,
    gemma2 and HF-format glm4 have no folder in current MindIE-LLM). Only for ``backend_type`` atb.

    Bad: ``"model_type": "gemma2"`` with backend_type atb.
    Good: a model_type with a folder in atb_llm/models (llama, qwen2, qwen3, qwen3_moe, deepseekv2 …).
    Fix: serve the model with a backend that implements it, or use a MindIE release that does.
    """
    from npu_preflight.knowledge import mindie_support

    if ctx.backend != "mindie-atb":
        return
    mt = ctx.config.get("model_type")
    if not isinstance(mt, str) or not mt:
        return
    host = None
    if ctx.availability("probe") is None:
        atb = ctx.probe.data.get("atb_models")
        if isinstance(atb, dict) and isinstance(atb.get("models"), list):
            host = atb
    sup = mindie_support(
        mt,
        ctx.config,
        [str(m) for m in host["models"]] if host else None,
        str(host.get("path")) if host else None,
    )
    data = {"model_type": mt, "folder": sup.folder, "where": sup.where, "source": sup.source}
    loc = Location(file="config.json", key="config.json:model_type")
    if sup.implemented:
        if sup.releases_without:
            yield Hit(
                f"model_type {mt!r} (MindIE folder {sup.folder!r}) is implemented in {', '.join(sup.releases_with)} "
                f"but not in {', '.join(sup.releases_without)}",
                "Check that the deployed MindIE release has atb_llm/models/" + sup.folder + ".",
                loc,
                data,
                severity=Severity.INFO,
            )
        return
    alias = f" (MindIE's name for it: {sup.folder!r})" if sup.folder != mt.lower() else ""
    if sup.where == "host":
        yield Hit(
            f"MindIE on this host has no implementation for model_type {mt!r}{alias}: get_model would raise "
            f"'NotImplementedError: unsupported model type: {sup.folder}' ({sup.source})",
            "Serve this model with another backend, or install a MindIE release that implements it.",
            loc,
            data,
            severity=Severity.ERROR,
        )
    else:
        yield Hit(
            f"MindIE ({sup.where}) has no implementation for model_type {mt!r}{alias}: get_model would raise "
            f"'NotImplementedError: unsupported model type: {sup.folder}' unless your release adds it",
            "Check atb_llm/models in the deployed MindIE (run without --static on that host to let the probe "
            "look), or serve the model with another backend.",
            loc,
            data,
        )


@check(
    "CFG009",
    "quantised and FP8 weights suit the target",
    Severity.WARNING,
    requires=("quantization",),
    backend="any",
    source="MindIE-LLM examples/atb_models/examples/models/deepseek-v3/README.md (FP8 → BF16 conversion); "
    "schemas/devices.json fp8 (CUDA compute capability ≥ 8.9); transformers FineGrainedFP8 quantizer",
)
def quantized_weights(ctx: Context) -> Iterator[Hit]:
    """Recognises FP8 (E4M3/E5M2 with block or per-tensor scales), MindIE's W8A8/W8A16 int8 and
    GPTQ/AWQ weights, says what they are (the memory plan counts them as stored), and what the
    target needs: a device without FP8 (every Ascend NPU; CUDA below compute capability 8.9) cannot
    run FP8 weights — MindIE's DeepSeek-V3 guide converts them to BF16 first, which doubles their
    size; MindIE's msmodelslim int8 formats load only in MindIE.

    Bad: DeepSeek-V3's FP8 release served on a 910B with backend_type atb.
    Good: the BF16 conversion (fp8_cast_bf16.py) or a W8A8 quantisation for the 910B.
    Fix: convert or quantise the weights for the target, as the finding says.
    """
    q = ctx.quantization
    if q.method is None:
        return
    target = ctx.target if ctx.availability("target") is None else None
    where = Location(file="config.json", key="config.json:quantization_config")
    data = {
        "method": q.method,
        "quantized_bytes": q.quantized_bytes,
        "aux_bytes": q.aux_bytes,
        "dequantized_bytes": q.dequantized_bytes,
        "share": round(q.share, 4),
    }
    yield Hit(
        f"weights are {q.label}: {len(q.quantized):,} tensors, {fmt_bytes(q.quantized_bytes)} "
        f"({q.share:.1%} of the stored bytes), plus {len(q.aux):,} scale/offset tensors ({fmt_bytes(q.aux_bytes)})",
        "Nothing to fix; the memory plan counts them as stored.",
        where,
        data,
        severity=Severity.INFO,
    )
    if target is None:
        return
    if q.method == "fp8" and target.fp8 is False:
        atb = ctx.backend == "mindie-atb" and target.kind == "npu"
        yield Hit(
            f"the {target.name} runs no FP8 weights: they must be converted to bfloat16 first, "
            f"{fmt_bytes(q.quantized_bytes)} of FP8 becoming {fmt_bytes(q.dequantized_bytes)} "
            f"(the scales are consumed by the conversion)",
            "Convert with DeepSeek's fp8_cast_bf16.py (MindIE's DeepSeek-V3 guide) or quantise to W8A8 with "
            "msmodelslim, and point the deployment at the converted folder."
            if target.kind == "npu"
            else "Use a GPU with compute capability 8.9 or above (H100, H200, L40S), or convert to bfloat16.",
            where,
            {**data, "target": target.name},
            severity=Severity.ERROR if atb else Severity.WARNING,
        )
    elif q.method in ("w8a8", "w8a16", "w4a16") and target.kind != "npu":
        yield Hit(
            f"{q.label} is MindIE's msmodelslim format; the {target.name} ({target.kind}) loaders do not read it",
            "Use the floating-point release on this target.",
            where,
            {**data, "target": target.name},
        )
