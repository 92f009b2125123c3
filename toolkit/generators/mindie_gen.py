"""The ``mindie`` generator adapter, run inside the sandbox child: the real
``GeneratorTorch(model_config)`` where ``mindie_llm`` imports."""


class MindieUnavailable(Exception):
    """mindie_llm is not installed in this interpreter."""


def run(request, emit):
    emit("import")
    try:
        from mindie_llm.text_generator.adapter.generator_torch import GeneratorTorch
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "mindie_llm":
            raise MindieUnavailable(f"mindie_llm is not installed ({exc})") from exc
        raise
    mc = dict(request["model_config"])
    mc.setdefault("model_id", request["weights_dir"])
    emit("generator")
    gen = GeneratorTorch(mc)
    out = {"generator_object": type(gen).__name__}
    try:
        import torch

        npu = getattr(torch, "npu", None)
        if npu is not None:
            out["peak_bytes"] = int(npu.max_memory_allocated())
            out["peak_source"] = "torch.npu.max_memory_allocated"
    except Exception:  # noqa: BLE001 - memory figures are best effort
        pass
    return out
