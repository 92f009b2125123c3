"""DATA: the bytes themselves — NaN, Inf, all-zero tensors, fp16 overflow, published hashes (--deep)."""

from __future__ import annotations

from collections.abc import Iterator

from npu_preflight.context import Context
from npu_preflight.model import Hit, Location, Phase, Severity
from npu_preflight.registry import check

_MAX = 30
FP16_MAX = 65504.0


def _limited(hits: list[Hit], what: str) -> Iterator[Hit]:
    yield from hits[:_MAX]
    if len(hits) > _MAX:
        yield Hit(
            f"{len(hits) - _MAX} more tensors with {what} not listed",
            "See the tensors above.",
            Location(),
            {"more": len(hits) - _MAX},
        )


@check(
    "DATA001",
    "no NaN values",
    Severity.ERROR,
    phase=Phase.DEEP,
    requires=("deep_scan",),
    backend="any",
    source="IEEE 754 (NaN) in the stored tensors",
)
def no_nan(ctx: Context) -> Iterator[Hit]:
    """A NaN in a weight spreads through every activation it touches: the model emits garbage or
    the same token forever. Usually a broken conversion or a diverged checkpoint.

    Bad: ``model.layers.3.mlp.down_proj.weight`` with 12 NaN values.
    Good: every float tensor finite.
    Fix: re-convert from the original checkpoint; do not deploy.
    """
    hits = [
        Hit(
            f"{t.name} holds {t.nan:,} NaN value(s) of {t.numel:,}",
            "Re-convert or re-download the weights.",
            Location(file=rel, tensor=t.name),
            t.to_dict(),
        )
        for rel, t in ctx.deep_scan.tensors()
        if t.nan
    ]
    yield from _limited(hits, "NaN")


@check(
    "DATA002",
    "no infinite values",
    Severity.ERROR,
    phase=Phase.DEEP,
    requires=("deep_scan",),
    backend="any",
    source="IEEE 754 (±Inf) in the stored tensors",
)
def no_inf(ctx: Context) -> Iterator[Hit]:
    """±Inf in a weight turns activations into Inf/NaN at the first matmul.

    Bad: an fp16 tensor saved after values overflowed 65504.
    Good: every float tensor finite.
    Fix: re-convert from a higher-precision checkpoint (bf16/fp32).
    """
    hits = [
        Hit(
            f"{t.name} holds {t.inf:,} infinite value(s)",
            "Re-convert from a higher-precision checkpoint.",
            Location(file=rel, tensor=t.name),
            t.to_dict(),
        )
        for rel, t in ctx.deep_scan.tensors()
        if t.inf
    ]
    yield from _limited(hits, "Inf")


def _zero_makes_no_sense(name: str, ndim_hint: int) -> bool:
    if ndim_hint >= 2:
        return True
    return name.endswith(("norm.weight", "layernorm.weight", "ln_f.weight", "final_layernorm.weight"))


@check(
    "DATA003",
    "no all-zero weights where zeros make no sense",
    Severity.WARNING,
    phase=Phase.DEEP,
    requires=("deep_scan", "tensors"),
    backend="any",
    source="the stored tensors (an all-zero matrix or norm)",
)
def no_zero_tensors(ctx: Context) -> Iterator[Hit]:
    """A weight matrix or normalisation weight that is entirely zero means a layer that never
    loaded or a conversion that wrote placeholders (biases may legitimately be zero).

    Bad: ``model.layers.0.input_layernorm.weight`` all zeros.
    Good: non-zero matrices and norms.
    Fix: re-convert; compare with the original checkpoint.
    """
    hits = []
    for rel, t in ctx.deep_scan.tensors():
        loc = ctx.tensors.get(t.name)
        ndim = len(loc.info.shape) if loc else 2
        if t.scanned and not t.nonzero and t.numel > 0 and _zero_makes_no_sense(t.name, ndim):
            hits.append(
                Hit(
                    f"{t.name} is entirely zero ({t.numel:,} values)",
                    "Re-convert the weights.",
                    Location(file=rel, tensor=t.name),
                    t.to_dict(),
                )
            )
    yield from _limited(hits, "all zeros")


@check(
    "DATA004",
    "values fit float16 when loaded as float16",
    Severity.ERROR,
    phase=Phase.DEEP,
    requires=("deep_scan",),
    backend="any",
    source="IEEE 754 binary16 range (65504)",
)
def fp16_overflow(ctx: Context) -> Iterator[Hit]:
    """bf16 and fp32 reach far beyond fp16's largest value (65504). Loaded as float16 — because
    ``torch_dtype`` says so, or the target chip (910A, 310P) has no bf16 — such values become ±Inf.

    Bad: a bf16 checkpoint with a 131072 in ``lm_head.weight`` deployed as float16.
    Good: max |x| ≤ 65504 in every tensor, or a bf16 deployment.
    Fix: deploy in bfloat16 on a chip that has it, or rescale/clamp and re-validate the model.
    """
    declared = ctx.declared_dtype
    reason = None
    if declared == "float16":
        reason = "config.json torch_dtype is float16"
    elif ctx.availability("target") is None and ctx.target.bf16 is False:
        reason = f"{ctx.target.name} has no bfloat16, so it runs in float16"
    if reason is None:
        return
    hits = []
    for rel, t in ctx.deep_scan.tensors():
        if t.dtype in ("BF16", "F32", "F64") and t.max_abs is not None and t.max_abs > FP16_MAX:
            hits.append(
                Hit(
                    f"{t.name} ({t.dtype}) reaches |x| = {t.max_abs:.6g} > 65504: {reason}, so it becomes Inf",
                    "Deploy in bfloat16 on a chip that supports it, or rescale and re-validate.",
                    Location(file=rel, tensor=t.name, key="config.json:torch_dtype"),
                    t.to_dict(),
                )
            )
    yield from _limited(hits, "fp16 overflow")


@check(
    "DATA005",
    "every tensor dtype is scanned",
    Severity.INFO,
    phase=Phase.DEEP,
    requires=("deep_scan",),
    backend="preflight",
    source="npu_preflight/deep.py decoders",
)
def not_scanned(ctx: Context) -> Iterator[Hit]:
    """The deep scan decodes F16, BF16, F32, F64, C64, F8_E4M3 and F8_E5M2 (NaN/Inf/overflow) and every
    integer type (all-zero). Sub-byte and block-scaled formats (F4, F6, F8_E8M0, *FNUZ) are hashed
    but not decoded; this note lists them.

    Bad: (not a fault) an F4 tensor — hashed, not scanned.
    Good: every dtype decoded.
    Fix: nothing to fix.
    """
    counts: dict[str, int] = {}
    for _, t in ctx.deep_scan.tensors():
        if not t.scanned:
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
    for dtype, n in sorted(counts.items()):
        yield Hit(
            f"{n} {dtype} tensor(s) were hashed but not scanned for NaN/Inf ({dtype} is not decoded)",
            "Nothing to fix.",
            Location(),
            {"dtype": dtype, "tensors": n},
        )


@check(
    "DATA006",
    "files match their published hashes",
    Severity.ERROR,
    phase=Phase.DEEP,
    requires=("deep_scan",),
    backend="any",
    source="huggingface_hub local-dir metadata (.cache/huggingface/download); Git LFS sha256",
)
def published_hashes(ctx: Context) -> Iterator[Hit]:
    """``huggingface-cli download --local-dir`` records each file's etag — the sha256 of LFS files, the
    git blob id of small ones — under ``.cache/huggingface/download``. A file that no longer matches
    was corrupted in transfer or changed afterwards.

    Bad: ``model-00002-of-00004.safetensors`` whose sha256 differs from its recorded etag.
    Good: every file matches.
    Fix: download the file again.
    """
    from npu_preflight.manifest import compare, hf_download_metadata

    expected = hf_download_metadata(ctx.weights_dir)
    if not expected:
        return
    for m in compare(ctx.deep_scan, expected, ctx.weights_dir, complete=False):
        yield Hit(m.message, f"Download {m.path} again.", Location(file=m.path), {"kind": m.kind})
