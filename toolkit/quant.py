"""Quantised and FP8 weights: what they are, which tensors are scales, what they cost converted.

Recognised from the tensors themselves (dtypes and the companion tensors each scheme stores next to
a weight) and named from config.json where it says more:

* **FP8** — ``F8_E4M3``/``F8_E5M2`` weights with ``weight_scale_inv`` (DeepSeek-V3's 128×128 block
  scales, ``quantization_config.weight_block_size``) or per-tensor ``weight_scale``/``input_scale``.
* **W8A8 / W8A16 / W4A16** (MindIE msmodelslim) — ``I8`` weights with ``deq_scale``,
  ``quant_bias``, ``input_scale``, ``input_offset`` (activations quantised too: W8A8) or only
  ``weight_scale``/``weight_offset`` (W8A16); config.json ``quantize`` names the scheme.
* **GPTQ / AWQ** — packed ``qweight`` (I32) with ``scales``, ``qzeros``, ``g_idx``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from npu_preflight.formats.safetensors import TensorInfo
from npu_preflight.records import frozen

FP8_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})
#: Companion tensors a quantised weight stores beside it (matched on the last name component).
AUX_SUFFIXES = (
    "weight_scale_inv",
    "weight_scale",
    "weight_offset",
    "weight_zero_point",
    "input_scale",
    "input_offset",
    "input_zero_point",
    "output_scale",
    "deq_scale",
    "quant_bias",
    "scales",
    "qzeros",
    "g_idx",
    "k_scale",
    "v_scale",
    "kv_scale",
)
_MINDIE_W8A8 = ("deq_scale", "quant_bias", "input_scale", "input_offset")


@frozen
class Quantization:
    """The scheme a folder's weights use (``method`` None: plain floating-point weights)."""

    method: str | None  # fp8 | w8a8 | w8a16 | w4a16 | gptq | awq | int8
    label: str
    quantized: frozenset[str]  # the quantised weight tensors
    aux: frozenset[str]  # their scales, offsets and indices
    quantized_bytes: int
    aux_bytes: int
    dequantized_bytes: int  # the quantised weights at 16 bits (what a BF16 conversion writes)
    total_bytes: int  # every tensor as stored
    block: tuple[int, int] | None = None
    declared: str | None = None  # what config.json says (quantization_config.quant_method / quantize)

    @property
    def share(self) -> float:
        """Fraction of the stored bytes that are quantised weights."""
        return self.quantized_bytes / self.total_bytes if self.total_bytes else 0.0


def is_aux(name: str) -> bool:
    """A scale/offset/index tensor of a quantised weight (by its name)."""
    last = name.rsplit(".", 1)[-1]
    return last in AUX_SUFFIXES


def _declared(cfg: Mapping[str, Any]) -> tuple[str | None, tuple[int, int] | None, str | None]:
    qc = cfg.get("quantization_config")
    block: tuple[int, int] | None = None
    fmt: str | None = None
    method: str | None = None
    if isinstance(qc, Mapping):
        m = qc.get("quant_method")
        method = m.lower() if isinstance(m, str) else None
        wb = qc.get("weight_block_size")
        if (
            isinstance(wb, list)
            and len(wb) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= 2**20 for x in wb)
        ):
            block = (wb[0], wb[1])
        f = qc.get("fmt")
        fmt = f if isinstance(f, str) else None
    q = cfg.get("quantize")
    if method is None and isinstance(q, str) and q:
        method = q.lower()
    return method, block, fmt


def detect(tensors: Mapping[str, TensorInfo], cfg: Mapping[str, Any]) -> Quantization:
    """The folder's quantisation scheme, from its tensors and config.json."""
    declared, block, fmt = _declared(cfg)
    quantized: set[str] = set()
    aux: set[str] = set()
    total = 0
    dtypes: set[str] = set()
    suffixes: set[str] = set()
    for name, info in tensors.items():
        total += info.nbytes
        if is_aux(name):
            aux.add(name)
            suffixes.add(name.rsplit(".", 1)[-1])
        elif info.dtype in FP8_DTYPES:
            quantized.add(name)
            dtypes.add(info.dtype)
        elif info.dtype == "I8" and name.endswith(".weight"):
            quantized.add(name)
            dtypes.add("I8")
        elif name.endswith(".qweight"):
            quantized.add(name)
            dtypes.add("packed")
    if not quantized:
        return Quantization(None, "unquantised", frozenset(), frozenset(), 0, 0, 0, total, None, declared)
    qbytes = sum(tensors[n].nbytes for n in quantized)
    abytes = sum(tensors[n].nbytes for n in aux)
    # a 16-bit copy: FP8/int8 elements at 2 bytes; packed int4 (8 per int32) at 16 bytes per int32
    deq = sum(tensors[n].numel * (16 if dtypes == {"packed"} else 2) for n in quantized)
    if dtypes & FP8_DTYPES:
        method = "fp8"
        kind = "E5M2" if any(tensors[n].dtype.startswith("F8_E5M2") for n in quantized) else "E4M3"
        if fmt:
            kind = fmt.upper()
        scale = (
            f"{block[0]}×{block[1]} block scales (weight_scale_inv)"
            if block
            else "block scales (weight_scale_inv)"
            if "weight_scale_inv" in suffixes
            else "per-tensor scales"
            if suffixes
            else "no scale tensors"
        )
        label = f"FP8 ({kind}) with {scale}"
    elif "packed" in dtypes:
        method = declared if declared in ("gptq", "awq") else "gptq"
        label = f"{method.upper()} packed int4 (qweight, scales, qzeros)"
    elif suffixes & set(_MINDIE_W8A8):
        method = "w8a8"
        label = "W8A8 int8 weights and activations (deq_scale, input_scale)"
    elif suffixes & {"weight_scale", "weight_offset"}:
        method = declared if declared in ("w8a16", "w4a16") else "w8a16"
        label = f"{method.upper()} int8 weights with per-channel scales"
    else:
        method = "int8"
        label = "int8 weights (no scale tensors recognised)"
    return Quantization(
        method,
        label,
        frozenset(quantized),
        frozenset(aux),
        qbytes,
        abytes,
        deq,
        total,
        block,
        declared,
    )
