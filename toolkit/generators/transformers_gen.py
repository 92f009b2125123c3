"""The ``transformers`` generator adapter, run inside the sandbox child (imports torch there only).

Mirrors what ``GeneratorTorch(model_config)`` does: tokenizer, model in the config's dtype on the
chosen device, sampler settings, a KV cache allocated the way MindIE sizes it (blocks of
``block_size`` tokens for ``max_batch_size × max_seq_len``), then a few-token forward and one
greedy step. Reports per-stage events and the peak memory.

As one rank of several it joins the process group (gloo on CPU, nccl on CUDA, hccl on NPU) and
loads with transformers' tensor-parallel plan (``tp_plan="auto"``): each rank reads and holds only
its shard, allocates its share of the KV cache, and runs the same forward as the others.
"""

import json
import math
import os
import resource
import threading
import time


def _rss():
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Watcher(threading.Thread):
    """Emits weights-loading progress as bytes resident (or allocated on the device) grow."""

    def __init__(self, emit, measure, total):
        super().__init__(daemon=True)
        self.emit, self.measure, self.total = emit, measure, total
        self.base = measure()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.25):
            done = max(self.measure() - self.base, 0)
            self.emit("weights", min(done, self.total), self.total)


def run(request, emit):
    emit("import")
    import torch
    import transformers

    device = request["device"]
    if device == "npu":
        import torch_npu  # noqa: F401 - registers the npu device
    dtype_name = request["dtype"]
    dtype = getattr(torch, dtype_name, None)
    if dtype_name not in ("float16", "bfloat16", "float32") or dtype is None:
        raise NotImplementedError(f"unsupported type: {dtype_name}")
    mc = request["model_config"]
    torch.set_num_threads(max(int(mc.get("num_threads") or 8), 1))
    weights = request["weights_dir"]
    trust = bool(request.get("trust_remote_code"))
    ranked = request.get("rank")
    if ranked:
        import torch.distributed as dist

        emit("process_group")
        if device == "cuda":
            torch.cuda.set_device(int(ranked["local_rank"]))
        elif device == "npu":
            torch.npu.set_device(int(mc.get("npu_device_id") or 0))
        if not dist.is_initialized():
            dist.init_process_group(request.get("dist_backend") or "gloo")
    if device == "cuda":
        if not ranked:
            torch.cuda.set_device(0)
        torch.cuda.reset_peak_memory_stats()
        measure = torch.cuda.memory_allocated
    elif device == "npu":
        if not ranked:
            torch.npu.set_device(int(mc.get("npu_device_id") or 0))
        torch.npu.reset_peak_memory_stats()
        measure = torch.npu.memory_allocated
    else:
        measure = _rss
    baseline_rss = _rss()

    emit("tokenizer")
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights, trust_remote_code=trust)

    emit("weights", 0, request.get("weights_bytes") or 0)
    watcher = _Watcher(emit, measure, int(request.get("weights_bytes") or 0))
    watcher.start()
    try:
        if ranked:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                weights, dtype=dtype, trust_remote_code=trust, tp_plan="auto"
            )
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                weights, dtype=dtype, trust_remote_code=trust, low_cpu_mem_usage=True
            )
            model = model.to(device if device != "npu" else f"npu:{int(mc.get('npu_device_id') or 0)}")
        model.eval()
    finally:
        watcher.stop.set()
    after_weights = measure()
    emit("weights", request.get("weights_bytes"), request.get("weights_bytes"))

    emit("sampler")
    gen_cfg = getattr(model, "generation_config", None)
    sampler = {
        "do_sample": bool(getattr(gen_cfg, "do_sample", False)),
        "eos_token_id": getattr(gen_cfg, "eos_token_id", None),
        "num_threads": torch.get_num_threads(),
    }

    emit("kv_cache")
    kv = request["kv"]
    kv_tensors = []
    if kv:
        shape = (kv["blocks"], kv["block_size"], kv["kv_heads_per_rank"], kv["head_dim"])
        for layer in range(kv["layers"]):
            for _ in range(kv["tensors_per_layer"]):
                # zeros, not empty: the pages must really be committed to count (and to fail)
                kv_tensors.append(torch.zeros(shape, dtype=dtype, device=model.device))
            emit("kv_cache", layer + 1, kv["layers"])

    emit("forward")
    text = "Hello, preflight."
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :16].to(model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        next_id = int(torch.argmax(logits[0, -1]).item())
        finite = bool(torch.isfinite(logits).all().item())
        step = model(input_ids=torch.cat([ids, torch.tensor([[next_id]], device=model.device)], dim=1)).logits
        finite = finite and bool(torch.isfinite(step).all().item())
    if not finite:
        raise FloatingPointError("the forward pass produced NaN or Inf logits")

    if device == "cuda":
        torch.cuda.synchronize()
        peak = int(torch.cuda.max_memory_allocated())
        reserved = int(torch.cuda.max_memory_reserved())
        source = "torch.cuda.max_memory_allocated"
    elif device == "npu":
        torch.npu.synchronize()
        peak = int(torch.npu.max_memory_allocated())
        reserved = int(torch.npu.max_memory_reserved())
        source = "torch.npu.max_memory_allocated"
    else:
        peak = _peak_rss()
        reserved = None
        source = "peak RSS of the init process"
    return {
        "device": device,
        "dtype": dtype_name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peak_bytes": peak,
        "reserved_peak_bytes": reserved,
        "peak_source": source,
        "baseline_rss_bytes": baseline_rss,
        "after_weights_bytes": int(after_weights),
        "kv_tensors": len(kv_tensors),
        "kv_bytes": int(sum(t.numel() * t.element_size() for t in kv_tensors)),
        "next_token": next_id,
        "sampler": json.loads(json.dumps(sampler, default=str)),
        "pid": os.getpid(),
        "finished_at": time.time(),
        "blocks_per_seq": math.ceil(kv["seq_len"] / kv["block_size"]) if kv else None,
        "tensor_parallel": bool(ranked),
    }
