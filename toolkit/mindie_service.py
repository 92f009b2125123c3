"""Mapping a MindIE-Service ``config.json`` onto the generator's ``model_config``.

Layout (MindIE Server docs, "Configuration Parameters"): ``BackendConfig.npuDeviceIds`` (a list of
lists, one per model instance), ``BackendConfig.ModelDeployConfig`` with ``maxSeqLen``,
``maxInputTokenLen`` and ``ModelConfig[]`` (``modelWeightPath``, ``worldSize``, ``npuMemSize``,
``cpuMemSize``, ``backendType``, ``trustRemoteCode``), and ``BackendConfig.ScheduleConfig`` with
``cacheBlockSize``, ``maxPrefillBatchSize``, ``maxPrefillTokens``, ``maxBatchSize``, ``maxIterTimes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from npu_preflight.errors import UsageError
from npu_preflight.mconfig import SERVICE_KEY

#: (section, service key) → generator key
_MAP = (
    ("model", "backendType", "backend_type"),
    ("model", "worldSize", "world_size"),
    ("model", "npuMemSize", "npu_mem"),
    ("model", "cpuMemSize", "cpu_mem"),
    ("model", "trustRemoteCode", "trust_remote_code"),
    ("model", "modelWeightPath", "model_id"),
    ("model", "modelName", "model_name"),
    ("deploy", "maxSeqLen", "max_seq_len"),
    ("deploy", "maxInputTokenLen", "max_input_len"),
    ("schedule", "cacheBlockSize", "block_size"),
    ("schedule", "maxPrefillBatchSize", "max_prefill_batch_size"),
    ("schedule", "maxPrefillTokens", "max_prefill_tokens"),
    ("schedule", "maxBatchSize", "max_batch_size"),
    ("schedule", "maxIterTimes", "max_iter_times"),
)


def _obj(value: Any, where: str, path: Path) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UsageError(f"{path}: {where} is missing or not an object (MindIE-Service config.json layout)")
    return value


def map_service_config(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The generator keys for rank 0 of the first model instance, plus the raw service fields
    the consistency rules need under ``_mindie_service``."""
    backend = _obj(doc.get("BackendConfig"), "BackendConfig", path)
    deploy = _obj(backend.get("ModelDeployConfig"), "BackendConfig.ModelDeployConfig", path)
    raw_schedule = backend.get("ScheduleConfig")
    schedule: Mapping[str, Any] = raw_schedule if isinstance(raw_schedule, Mapping) else {}
    models = deploy.get("ModelConfig")
    if not isinstance(models, list) or not models or not isinstance(models[0], Mapping):
        raise UsageError(f"{path}: BackendConfig.ModelDeployConfig.ModelConfig must be a non-empty list of objects")
    sections: dict[str, Mapping[str, Any]] = {"model": models[0], "deploy": deploy, "schedule": schedule}
    out: dict[str, Any] = {}
    for section, src, dst in _MAP:
        if src in sections[section]:
            out[dst] = sections[section][src]
    device_ids = backend.get("npuDeviceIds")
    first: list[Any] = []
    if isinstance(device_ids, list) and device_ids and isinstance(device_ids[0], list):
        first = device_ids[0]
    out["rank"] = 0
    out["local_rank"] = 0
    if first and isinstance(first[0], int):
        out["npu_device_id"] = first[0]
    out[SERVICE_KEY] = {
        "file": str(path),
        "npuDeviceIds": device_ids,
        "worldSize": models[0].get("worldSize"),
        "maxSeqLen": deploy.get("maxSeqLen"),
        "maxInputTokenLen": deploy.get("maxInputTokenLen"),
        "modelWeightPath": models[0].get("modelWeightPath"),
        "multiNodesInferEnabled": backend.get("multiNodesInferEnabled"),
        "modelInstanceNumber": backend.get("modelInstanceNumber"),
        "instances": len(models),
    }
    return out
