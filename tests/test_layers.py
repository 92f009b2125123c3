"""The import layers of DESIGN.md §1, read from the source (no import needed):

app (``npu_preflight.cli``, ``__main__``) → checks, reports → engine (everything else).

* the engine imports neither a check, a renderer nor the app;
* checks and reports import neither each other nor the app;
* only the app imports click;
* the scripts that run in a child under the deployment's interpreter (the probe, the sandbox child
  and supervisor, the generator adapters) import nothing of ours and only the stdlib plus the
  libraries they exist to test;
* torch and transformers are imported only by those scripts;
* nothing imports the repository's folder names (``toolkit``, ``checks``, ``reports``, ``schemas``)
  as top-level packages.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: repository folder → its name in the installed namespace
ROOTS = {
    "toolkit": "npu_preflight",
    "checks": "npu_preflight.checks",
    "reports": "npu_preflight.reports",
    "schemas": "npu_preflight.schemas",
}
APP = {"npu_preflight.cli", "npu_preflight.__main__"}
CHILD_SCRIPTS = ("probe/probe_script.py", "sandbox/child.py", "sandbox/supervisor.py", "generators/")
#: The supervisor is a child script (stdlib only) that the tool also imports for its cgroup helper.
#: What a child script may import besides the stdlib: the libraries it exists to exercise.
CHILD_LIBRARIES = {"torch", "torch_npu", "transformers", "tokenizers", "mindie_llm", "accelerate", "safetensors"}
OLD_TOP_LEVEL = {"toolkit", "checks", "reports", "schemas"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    child_script: bool

    @property
    def layer(self) -> str:
        if self.name in APP:
            return "app"
        for layer in ("checks", "reports"):
            if self.name == f"npu_preflight.{layer}" or self.name.startswith(f"npu_preflight.{layer}."):
                return layer
        return "engine"


def modules() -> Iterator[Module]:
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            child = folder == "toolkit" and str(rel).startswith(CHILD_SCRIPTS) and not str(rel).endswith("__init__.py")
            yield Module(name, path, child)


def imports(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Every module name ``source`` imports (relative imports resolved)."""
    tree = ast.parse(source)
    base = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # "from npu_preflight import checks" imports a subpackage
                yield f"{target}.{alias.name}"


def layer_of(name: str) -> str | None:
    if not (name == "npu_preflight" or name.startswith("npu_preflight.")):
        return None
    return Module(name, Path(), False).layer


ALLOWED = {
    "app": {"app", "checks", "reports", "engine"},
    "checks": {"checks", "engine"},
    "reports": {"reports", "engine"},
    "engine": {"engine"},
}


def violations(mod: Module, source: str) -> list[str]:
    out = []
    names = set(imports(source, mod.name, mod.path.name == "__init__.py"))
    for name in sorted(names):
        top = name.split(".")[0]
        if top in OLD_TOP_LEVEL:
            out.append(f"{mod.name} imports {name!r}: our packages live under npu_preflight")
        if mod.child_script:
            if top == "npu_preflight":
                out.append(f"{mod.name} (a child script) imports {name}; it must run without the tool installed")
            elif top not in sys.stdlib_module_names and top not in CHILD_LIBRARIES and top != "__future__":
                out.append(f"{mod.name} (a child script) imports {name}, which is neither stdlib nor a tested library")
            continue
        if top in ("torch", "transformers", "torch_npu"):
            out.append(f"{mod.name} imports {name}: only the probe, sandbox and generator scripts may")
        if top == "click" and mod.layer != "app":
            out.append(f"{mod.name} imports click: only the app (cli) may")
        target = layer_of(name)
        if target is not None and target not in ALLOWED[mod.layer]:
            out.append(
                f"{mod.name} ({mod.layer}) imports {name} ({target}): layers point app → checks/reports → engine"
            )
    return out


def test_layers_point_one_way() -> None:
    found = [v for m in modules() for v in violations(m, m.path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def test_every_layer_is_populated() -> None:
    layers = {m.layer for m in modules()}
    assert layers == {"app", "checks", "reports", "engine"}
    assert sum(m.child_script for m in modules()) >= 4


def test_the_rules_catch_what_they_forbid() -> None:
    """The analyser itself: each forbidden edge, planted in a module of the wrong layer, is reported."""
    engine = Module("npu_preflight.memory", REPO / "toolkit/memory.py", False)
    check = Module("npu_preflight.checks.weights", REPO / "checks/weights.py", False)
    child = Module("npu_preflight.sandbox.child", REPO / "toolkit/sandbox/child.py", True)
    assert violations(engine, "from npu_preflight.checks import weights\n")
    assert violations(engine, "from npu_preflight import reports\n")
    assert violations(engine, "import npu_preflight.cli\n")
    assert violations(engine, "from . import cli\n")
    assert violations(engine, "import click\n")
    assert violations(engine, "import torch\n")
    assert violations(check, "from npu_preflight.reports import text\n")
    assert violations(check, "from schemas import load\n")
    assert violations(child, "from npu_preflight.units import fmt_bytes\n")
    assert violations(child, "import numpy\n")
    assert not violations(child, "import json, torch\n")
    assert not violations(check, "from npu_preflight.context import Context\n")
