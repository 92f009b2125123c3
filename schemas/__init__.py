"""JSON Schemas and data files shipped with the tool, loaded by name."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> Any:
    """Parse ``schemas/<name>`` (a JSON file shipped in the package)."""
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))
