"""What the backends themselves say about model families, read from the two tables the tool ships.

* ``schemas/transformers_models.json`` — generated from the installed transformers by
  ``scripts/gen_transformers_table.py`` (a test fails when it is stale): the model types transformers
  builds in and each family's constant config defaults (read here without importing torch).
* ``schemas/mindie_models.json`` — written by hand from MindIE-LLM's own code and model READMEs, each
  entry with its source: the model types each snapshot implements, the aliases ``get_model``
  applies, the BF16 column of the model tables, FP8 and tensor-parallel behaviour.

Where the probe found MindIE's ``atb_llm`` on the host, its model folders replace the snapshots: that
list is what ``get_model`` will actually accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from npu_preflight.records import frozen
from npu_preflight.schemas import load


@cache
def transformers_table() -> Mapping[str, Any]:
    """schemas/transformers_models.json."""
    value: Mapping[str, Any] = load("transformers_models.json")
    return value


@cache
def mindie_table() -> Mapping[str, Any]:
    """schemas/mindie_models.json."""
    value: Mapping[str, Any] = load("mindie_models.json")
    return value


def transformers_version() -> str:
    """The transformers release the table was generated from."""
    return str(transformers_table()["transformers_version"])


def builtin_entry(model_type: str) -> Mapping[str, Any] | None:
    """The table's entry for a model type transformers builds in, else None."""
    entry = transformers_table()["model_types"].get(model_type)
    return entry if isinstance(entry, Mapping) else None


def has_tp_plan(model_type: str) -> bool | None:
    """Whether transformers has a tensor-parallel plan for the family (None: not built in)."""
    entry = builtin_entry(model_type)
    return None if entry is None else bool(entry.get("tp_plan"))


def with_defaults(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """``cfg`` completed with its family's constant defaults (as transformers' config class would
    complete it) and the keys that came from the defaults.

    A key given under another name (``num_experts`` for qwen3_moe's ``num_local_experts``, through
    the class's ``attribute_map``) counts as given: its default is not applied.
    """
    mt = cfg.get("model_type")
    entry = builtin_entry(mt) if isinstance(mt, str) else None
    if entry is None:
        return dict(cfg), frozenset()
    amap: Mapping[str, str] = entry.get("attribute_map") or {}
    given = set(cfg)
    for alias, target in amap.items():
        if alias in cfg:
            given.add(target)
        if target in cfg:
            given.add(alias)
    out = dict(cfg)
    added: set[str] = set()
    for key, value in (entry.get("defaults") or {}).items():
        if key not in given:
            out[key] = value
            added.add(key)
    for alias, target in amap.items():  # make the canonical name readable under both spellings
        if alias in out and target not in out:
            out[target] = out[alias]
    return out, frozenset(added)


@frozen
class MindieSupport:
    """Whether MindIE's ATB backend has an implementation for a model type."""

    model_type: str
    folder: str  # after lowercasing and get_model's aliases
    implemented: bool
    where: str  # "host" (the probe's atb_llm) or the snapshot's name
    source: str
    releases_with: tuple[str, ...] = ()
    releases_without: tuple[str, ...] = ()


def _alias(model_type: str, cfg: Mapping[str, Any], aliases: Mapping[str, str]) -> str:
    mt = model_type.lower()
    if mt == "chatglm" and "vision_config" in cfg:
        return "glm4v"
    return aliases.get(mt, mt)


def mindie_support(
    model_type: str, cfg: Mapping[str, Any], host_models: Sequence[str] | None = None, host_path: str | None = None
) -> MindieSupport:
    """Look ``model_type`` up as MindIE's ``get_model`` does: on the host's atb_llm when the probe
    found it, else in the shipped snapshots (newest first)."""
    releases = mindie_table()["releases"]
    newest = releases[0]
    if host_models is not None:
        folder = _alias(model_type, cfg, newest["aliases"])
        return MindieSupport(
            model_type, folder, folder in host_models, "host", f"atb_llm/models on this host ({host_path})"
        )
    folder = _alias(model_type, cfg, newest["aliases"])
    with_ = tuple(r["name"] for r in releases if _alias(model_type, cfg, r["aliases"]) in r["models"])
    without = tuple(r["name"] for r in releases if r["name"] not in with_)
    return MindieSupport(
        model_type,
        folder,
        folder in newest["models"],
        newest["name"],
        newest["source"],
        with_,
        without,
    )


def mindie_folder(model_type: str, cfg: Mapping[str, Any]) -> str:
    """The atb_llm/models folder MindIE would use for this model type (after its aliases)."""
    return _alias(model_type, cfg, mindie_table()["releases"][0]["aliases"])


def mindie_bf16(folder: str) -> Mapping[str, Any] | None:
    """The BF16 column of the family's MindIE README table, with its source; None when not listed."""
    entry = mindie_table()["bf16_on_800I_A2"].get(folder)
    return entry if isinstance(entry, Mapping) else None


def mindie_fact(section: str, key: str | None = None) -> Mapping[str, Any]:
    """A sourced statement from mindie_models.json (``fp8``, ``tensor_parallel.<key>``, ...)."""
    value: Mapping[str, Any] = mindie_table()[section]
    if key is not None:
        value = value[key]
    return value
