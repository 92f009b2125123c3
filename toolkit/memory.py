"""The per-rank memory plan (DESIGN.md §7): weights + KV cache + workspace + runtime overhead,
against the device budget — before anything is loaded.

Terms, all per rank:

* **weights** — every tensor at the load dtype (config ``torch_dtype``; non-float/quantised tensors
  as stored). Tensor-parallel tensors are divided by ``world_size``; replicated ones (norms,
  row-parallel biases, MoE routers) count whole; K/V projections divide by ``min(world_size,
  num_key_value_heads)`` because KV heads are replicated when there are fewer than ranks.
* **KV cache** — MindIE's block formula (FACTS.md §1): ``block_bytes = block_size × dtype_bytes ×
  kv_heads_per_rank × head_dim × 2 (K and V) × layers``; ``blocks = max_batch_size ×
  ceil(max_seq_len / block_size)``. MLA models (DeepSeek) cache ``kv_lora_rank + qk_rope_head_dim``
  values per token and layer, not per head.
* **workspace** — activations of one prefill of ``T`` tokens (``T = max_prefill_tokens``, else
  ``max_seq_len``): ``T × (4·hidden + 3·intermediate/world_size) × dtype_bytes`` plus fp32 logits
  for the batch's last tokens ``max_batch_size × vocab/world_size × 4``. An estimate: flash attention
  keeps scores out of it.
* **runtime overhead** — NPU: 2 GiB for the CANN/ATB runtime and its workspace (an estimate);
  CUDA: 0.5 GiB for the CUDA context; CPU: the interpreter with torch and transformers imported,
  as the probe measured it (else 400 MiB), plus 120 MiB that loading a model adds (measured).
* **budget** — device total × fraction − memory already in use, where fraction is
  ``NPU_MEMORY_FRACTION`` (default 0.8 as in mindie_llm) on NPU, 0.9 on CUDA (vLLM's default
  ``gpu_memory_utilization``), 1.0 on CPU.

The sandboxed init loads the weights, allocates the KV cache and runs a few-token forward; its
expected peak (``predicted_peak_bytes``) is overhead + weights + KV + a small forward; on CPU the
weights are memory-mapped, so an untied embedding (of which a forward reads a few rows) is left out,
and a dtype conversion adds the shard being converted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from npu_preflight.formats.safetensors import DTYPE_BITS, FLOAT_DTYPES, TORCH_NAME, TensorInfo
from npu_preflight.records import frozen

if TYPE_CHECKING:
    from npu_preflight.arch import Dims, Family
    from npu_preflight.catalog import DeviceSpec
    from npu_preflight.mconfig import ModelConfig
    from npu_preflight.quant import Quantization

GIB = 1024**3
MIB = 1024**2
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
OVERHEAD = {"npu": 2 * GIB, "cuda": GIB // 2, "cpu": 400 * MIB}
#: What loading a model adds to the CPU process beyond ``import torch, transformers`` (model class,
#: generation and tokenizer modules, allocator arenas). Measured with torch 2.13 / transformers 5.24
#: on a tiny model: 358 MB RSS after the weights vs 248 MB after the imports (bench/RESULTS.md).
CPU_FRAMEWORK_LOAD = 120 * MIB
DEFAULT_FRACTION = {"npu": 0.8, "cuda": 0.9, "cpu": 1.0}
_COLUMN_BIASES = ("q_proj.bias", "k_proj.bias", "v_proj.bias", "query_key_value.bias", "W_pack.bias", "wqkv.bias")
_KV_PROJ = ("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")
#: Row-parallel weights (split along their input dimension) in tensor-parallel plans.
ROWWISE = ("o_proj.weight", "down_proj.weight", "w2.weight", "wo.weight", "dense.weight", "dense_4h_to_h.weight")
MAX_SEQ_CAP = 1_000_000


@frozen
class KvPlan:
    """The KV cache sizing."""

    block_size: int
    block_bytes: int
    per_token_bytes: int
    blocks: int
    batch: int
    seq_len: int
    seq_len_source: str
    kv_heads_per_rank: int
    dtype_bytes: int
    head_dim: int
    layers: int
    tensors_per_layer: int


@frozen
class Plan:
    """Every term of the per-rank plan, and how it compares with the budget."""

    world_size: int
    load_dtype: str | None
    weights_total_bytes: int
    weights_bytes: int
    largest_shard_bytes: int
    kv: KvPlan | None
    overhead_bytes: int
    device: DeviceSpec | None
    fraction: float | None
    in_use_bytes: int
    notes: tuple[str, ...] = ()
    measured_peak_bytes: int | None = None
    measured_source: str | None = None
    host_available_bytes: int | None = None
    init_forward_bytes: int = 0
    act_bytes_per_token: int = 0
    logits_bytes_per_seq: int = 0
    prefill_tokens: int | None = None  # max_prefill_tokens when set, else the sequence length
    converts: bool = False  # some float tensors are stored in another dtype than the load dtype
    embedding_bytes: int = 0  # an untied input embedding (only looked-up rows are read)
    rowwise_bytes: int = 0  # row-parallel weights (o_proj, down_proj …) whole, at the load dtype
    max_positions: int | None = None  # the model's positions: no fitting length is offered beyond them

    def workspace_for(self, seq_len: int, batch: int) -> int:
        """Workspace for a prefill at ``seq_len`` tokens and logits for ``batch`` sequences."""
        t = self.prefill_tokens or seq_len
        return t * self.act_bytes_per_token + batch * self.logits_bytes_per_seq

    def total_for(self, seq_len: int, batch: int) -> int:
        """What the deployment needs per rank at this length and batch."""
        if self.kv is None:
            return self.total_bytes
        kv = batch * math.ceil(seq_len / self.kv.block_size) * self.kv.block_bytes
        return self.weights_bytes + kv + self.workspace_for(seq_len, batch) + self.overhead_bytes

    @property
    def kv_cache_bytes(self) -> int:
        """KV cache bytes (0 when unknown)."""
        return self.kv.blocks * self.kv.block_bytes if self.kv else 0

    @property
    def total_bytes(self) -> int:
        """What the deployment needs per rank."""
        return self.weights_bytes + self.kv_cache_bytes + self.workspace_bytes + self.overhead_bytes

    @property
    def workspace_bytes(self) -> int:
        """Workspace at the configured length and batch."""
        if self.kv is None:
            return 0
        return self.workspace_for(self.kv.seq_len, self.kv.batch)

    @property
    def budget_bytes(self) -> int | None:
        """What the device gives this rank (None without a device)."""
        if self.device is None or self.fraction is None:
            return None
        return max(int(self.device.total_bytes * self.fraction) - self.in_use_bytes, 0)

    @property
    def headroom_bytes(self) -> int | None:
        """Budget minus need (negative: it does not fit)."""
        b = self.budget_bytes
        return None if b is None else b - self.total_bytes

    @property
    def predicted_peak_bytes(self) -> int:
        """What the sandboxed init should peak at: no full-size prefill. On CPU transformers maps the
        safetensors files instead of copying them when no conversion is needed, so weights become
        resident as the forward reads them — all but an untied embedding, of which only the
        looked-up rows are read; with a conversion, the mapped shard being converted adds to it."""
        weights = self.weights_bytes
        if self.device is not None and self.device.kind == "cpu" and self.world_size > 1:
            # transformers' tensor-parallel load on CPU over mapped safetensors: a column-parallel
            # shard is a contiguous slice (its pages only), a row-parallel shard is a column slice
            # that reads every page of the whole tensor and keeps a copy; the replicated embedding
            # is read a few rows at a time (measured in bench/multirank_bench.py)
            weights = weights + self.rowwise_bytes - self.embedding_bytes // self.world_size
        elif self.device is not None and self.device.kind == "cpu":
            weights = weights + self.largest_shard_bytes if self.converts else weights - self.embedding_bytes
        return self.overhead_bytes + weights + self.kv_cache_bytes + self.init_forward_bytes

    def kv_budget(self) -> int | None:
        """Bytes left for the KV cache after weights, workspace and overhead."""
        b = self.budget_bytes
        if b is None:
            return None
        return b - self.weights_bytes - self.workspace_bytes - self.overhead_bytes

    def _largest(self, fits: Callable[[int], bool], hi: int) -> int:
        """Largest n in [0, hi] with fits(n) (fits is monotone), by binary search."""
        lo = 0
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def max_seq_len_fit(self) -> int | None:
        """Longest max_seq_len (a multiple of block_size) that fits at the configured batch, as vLLM's
        "estimated maximum model length" (0: not even one block) — never beyond the model's own
        positions (:attr:`max_positions`) or the plan's MAX_SEQ_CAP."""
        budget = self.budget_bytes
        if budget is None or self.kv is None:
            return None
        kv = self.kv
        cap = min(MAX_SEQ_CAP, self.max_positions or MAX_SEQ_CAP)
        blocks = self._largest(lambda n: self.total_for(n * kv.block_size, kv.batch) <= budget, cap // kv.block_size)
        fit = blocks * kv.block_size
        if (
            self.max_positions
            and fit == (cap // kv.block_size) * kv.block_size
            and self.total_for(cap, kv.batch) <= budget
        ):
            return cap  # everything up to the model's positions fits
        return fit

    def fit_capped_by_positions(self) -> bool:
        """The longest fitting length is the model's own positions (more memory would not help)."""
        fit = self.max_seq_len_fit()
        return bool(self.max_positions and fit is not None and fit >= self.max_positions)

    def max_batch_fit(self) -> int | None:
        """Largest batch that fits at the configured max_seq_len."""
        budget = self.budget_bytes
        if budget is None or self.kv is None:
            return None
        kv = self.kv
        return self._largest(lambda b: self.total_for(kv.seq_len, b) <= budget, 1_000_000)

    def remedy(self) -> str:
        """What to change so the plan fits, with the plan's own numbers (MEM002, and INIT001 after a
        device OOM)."""
        bits = []
        fit_seq, fit_batch = self.max_seq_len_fit(), self.max_batch_fit()
        if self.kv and fit_seq:
            bits.append(f"lower max_seq_len to {fit_seq:,} (at batch {self.kv.batch})")
        if self.kv and fit_batch:
            bits.append(f"lower max_batch_size to {fit_batch} (at max_seq_len {self.kv.seq_len:,})")
        bits.append(f"raise world_size (e.g. {self.world_size * 2}) to split the weights")
        if self.load_dtype == "float32":
            bits.append("load in float16/bfloat16 (half the bytes)")
        bits.append("or use a device with more memory")
        return "; ".join(bits).capitalize() + "."

    def kv_request(self) -> dict[str, int] | None:
        """The KV cache the sandboxed init allocates (MindIE's sizing), as plain JSON."""
        k = self.kv
        if k is None:
            return None
        return {
            "blocks": k.blocks,
            "block_size": k.block_size,
            "kv_heads_per_rank": k.kv_heads_per_rank,
            "head_dim": k.head_dim,
            "layers": k.layers,
            "tensors_per_layer": k.tensors_per_layer,
            "seq_len": k.seq_len,
        }

    def with_measurement(self, peak: int | None, source: str | None) -> Plan:
        """The plan with the init's measured peak attached."""
        return replace(self, measured_peak_bytes=peak, measured_source=source)

    def to_dict(self) -> dict[str, Any]:
        """The report's ``memory`` section."""
        kv = self.kv
        measured = self.measured_peak_bytes
        predicted = self.predicted_peak_bytes
        return {
            "world_size": self.world_size,
            "load_dtype": self.load_dtype,
            "device": self.device.to_dict() if self.device else None,
            "fraction": self.fraction,
            "in_use_bytes": self.in_use_bytes,
            "weights_total_bytes": self.weights_total_bytes,
            "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes if kv else None,
            "workspace_bytes": self.workspace_bytes,
            "overhead_bytes": self.overhead_bytes,
            "total_bytes": self.total_bytes,
            "budget_bytes": self.budget_bytes,
            "headroom_bytes": self.headroom_bytes,
            "largest_shard_bytes": self.largest_shard_bytes,
            "host_available_bytes": self.host_available_bytes,
            "kv": None
            if kv is None
            else {
                "block_size": kv.block_size,
                "block_bytes": kv.block_bytes,
                "per_token_bytes": kv.per_token_bytes,
                "blocks": kv.blocks,
                "batch": kv.batch,
                "seq_len": kv.seq_len,
                "seq_len_source": kv.seq_len_source,
                "kv_heads_per_rank": kv.kv_heads_per_rank,
                "max_seq_len_fit": self.max_seq_len_fit(),
                "max_seq_len_fit_capped": self.fit_capped_by_positions(),
                "max_positions": self.max_positions,
                "max_batch_fit": self.max_batch_fit(),
            },
            "predicted_peak_bytes": predicted,
            "measured_peak_bytes": measured,
            "measured_source": self.measured_source,
            "prediction_error_pct": None if not measured else round((predicted - measured) / measured * 100, 2),
            "notes": list(self.notes),
        }


@frozen
class PlanInputs:
    """Everything the plan is computed from, as plain values (``context.py`` gathers them)."""

    tensors: Mapping[str, TensorInfo]
    load_dtype: str | None
    shard_sizes: tuple[int, ...] = ()
    arch: tuple[Family, Dims] | None = None
    max_positions: int | None = None
    model_config: ModelConfig | None = None
    device: DeviceSpec | None = None
    device_note: str | None = None
    npu_memory_fraction: str | None = None  # the raw NPU_MEMORY_FRACTION
    runtime_rss: int | None = None  # the probe's RSS after importing torch and transformers
    host_available: int | None = None
    quant: Quantization | None = None


def weights_per_rank(
    tensors: Mapping[str, TensorInfo],
    world_size: int,
    load_bytes: int | None,
    kv_heads: int | None,
    quant: Quantization | None = None,
    dequantize: bool = False,
) -> tuple[int, int]:
    """(total bytes at load dtype, bytes per rank) with tensor-parallel sharding. Quantised weights
    and their scales count as stored; with ``dequantize`` (a target that cannot run them) the
    weights count at 16 bits and the scales, consumed by the conversion, not at all."""
    total, per_rank = 0, 0.0
    aux = quant.aux if quant is not None else frozenset()
    qw = quant.quantized if quant is not None else frozenset()
    for name, info in tensors.items():
        if name in aux:
            if dequantize:
                continue
            nbytes = info.nbytes
        elif name in qw and dequantize:
            nbytes = info.numel * 2
        elif info.dtype in FLOAT_DTYPES and load_bytes is not None:
            nbytes = info.numel * load_bytes
        else:
            nbytes = info.numel * DTYPE_BITS[info.dtype] // 8
        total += nbytes
        if world_size == 1:
            per_rank += nbytes
            continue
        one_d = len(info.shape) <= 1
        if (one_d and not name.endswith(_COLUMN_BIASES)) or name.endswith(("gate.weight", "e_score_correction_bias")):
            per_rank += nbytes  # replicated
        elif name.endswith(_KV_PROJ) and kv_heads:
            per_rank += nbytes / min(world_size, kv_heads)
        else:
            per_rank += nbytes / world_size
    return total, math.ceil(per_rank)


def make_plan(inp: PlanInputs) -> Plan:
    """Build the plan from plain inputs: the tensors, the architecture, the model_config, the device."""
    notes: list[str] = []
    mc = inp.model_config
    ws = (mc.world_size if mc is not None else None) or 1
    load_dtype = inp.load_dtype
    load_bytes = DTYPE_BYTES.get(load_dtype or "")
    if load_bytes is None:
        notes.append(f"load dtype {load_dtype!r} unknown: float tensors counted as stored")
    kv_heads = inp.arch[1].kv_heads if inp.arch is not None else None
    device = inp.device
    quant = inp.quant if inp.quant is not None and inp.quant.method is not None else None
    dequantize = quant is not None and quant.method == "fp8" and device is not None and device.fp8 is False
    if dequantize and quant is not None:
        notes.append(
            f"the {device.name if device else 'target'} runs no FP8: weights planned as converted to 16 bits "
            f"({quant.quantized_bytes / GIB:.1f} GiB of FP8 become {quant.dequantized_bytes / GIB:.1f} GiB)"
        )
    total, per_rank = weights_per_rank(inp.tensors, ws, load_bytes, kv_heads, quant, dequantize)
    largest = max(inp.shard_sizes, default=0)
    if device is None and inp.device_note:
        notes.append(inp.device_note)
    kind = device.kind if device else "npu"

    kv: KvPlan | None = None
    init_forward = 0
    embedding = 0
    act = logits = 0
    prefill: int | None = None
    dtype_bytes = load_bytes or 2
    if inp.arch is not None:
        fam, d = inp.arch
        layers = d.layers
        block = mc.block_size if mc is not None else 128
        if fam.attention == "mla" and d.kv_lora_rank:
            # MLA caches one compressed latent (plus the rope part) per token and layer
            head_dim = d.kv_lora_rank + d.qk_rope_head_dim
            kv_rank, tensors = 1, 1
        else:
            head_dim, kv_rank, tensors = d.head_dim, max(d.kv_heads // ws, 1), 2
        per_token = tensors * kv_rank * head_dim * dtype_bytes * layers
        seq = mc.positive("max_seq_len") if mc is not None else None
        source = "model_config.max_seq_len"
        if seq is None:
            seq = inp.max_positions or 2048
            source = "config.json max_position_embeddings" if inp.max_positions else "default 2048"
            raw = mc.get("max_seq_len") if mc is not None else None
            if raw is not None:
                shown = f"{raw:,}" if isinstance(raw, int) and not isinstance(raw, bool) else repr(raw)[:40]
                notes.append(
                    f"model_config max_seq_len {shown} is outside what MindIE accepts (1 to {MAX_SEQ_CAP:,}; see "
                    f"MC001): planned with {source} ({seq:,}) instead"
                )
        if seq > MAX_SEQ_CAP:
            notes.append(
                f"max_seq_len {seq:,} is beyond what the plan models ({MAX_SEQ_CAP:,} tokens): planned at {MAX_SEQ_CAP:,}"
            )
            seq = MAX_SEQ_CAP
        batch = (mc.positive("max_batch_size") if mc is not None else None) or 1
        blocks = batch * math.ceil(seq / block)
        kv = KvPlan(
            block,
            block * per_token,
            per_token,
            blocks,
            batch,
            seq,
            source,
            kv_rank,
            dtype_bytes,
            head_dim,
            layers,
            tensors,
        )
        prefill = mc.positive("max_prefill_tokens") if mc is not None else None
        inter = (d.moe_intermediate or d.intermediate or 4 * d.hidden) // ws
        vocab = (d.vocab or 0) // ws
        act = (4 * d.hidden + 3 * inter) * dtype_bytes
        logits = vocab * 4
        emb = inp.tensors.get(fam.embed)
        if emb is not None and not d.tie and emb.dtype in FLOAT_DTYPES:
            embedding = emb.numel * (load_bytes or DTYPE_BITS[emb.dtype] // 8)
        few = 16
        init_forward = few * (4 * d.hidden + 3 * inter) * 4 + few * vocab * 4
    else:
        notes.append("architecture unknown: KV cache and workspace not planned")

    overhead = OVERHEAD[kind]
    if device is not None and device.kind == "cpu" and inp.runtime_rss:
        overhead = inp.runtime_rss + CPU_FRAMEWORK_LOAD
    fraction: float | None = None
    in_use = 0
    if device is not None:
        fraction = DEFAULT_FRACTION[device.kind]
        if device.kind == "npu" and inp.npu_memory_fraction is not None:
            from npu_preflight.envvars import parse_float

            v = parse_float(inp.npu_memory_fraction)
            if v is not None and 0 < v <= 1:
                fraction = v
        if device.free_bytes is not None:
            in_use = max(device.total_bytes - int(device.free_bytes), 0)
        npu_mem = mc.positive("npu_mem") if mc is not None else None
        if device.kind == "npu" and npu_mem is not None and kv is not None:
            notes.append(f"npu_mem {npu_mem} GB caps the KV cache at {npu_mem} GiB")
    return Plan(
        world_size=ws,
        load_dtype=load_dtype,
        weights_total_bytes=total,
        weights_bytes=per_rank,
        largest_shard_bytes=largest,
        kv=kv,
        overhead_bytes=overhead,
        device=device,
        fraction=fraction,
        in_use_bytes=in_use,
        notes=tuple(notes),
        host_available_bytes=inp.host_available if device is not None else None,
        init_forward_bytes=init_forward,
        act_bytes_per_token=act,
        logits_bytes_per_seq=logits,
        prefill_tokens=prefill,
        converts=any(
            t.dtype in FLOAT_DTYPES and TORCH_NAME.get(t.dtype) != load_dtype and (quant is None or n not in quant.aux)
            for n, t in inp.tensors.items()
        ),
        embedding_bytes=embedding,
        max_positions=inp.max_positions,
        rowwise_bytes=sum(
            t.numel * (load_bytes or DTYPE_BITS[t.dtype] // 8)
            for n, t in inp.tensors.items()
            if len(t.shape) == 2 and n.endswith(ROWWISE)
        ),
    )
