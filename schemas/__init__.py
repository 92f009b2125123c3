"""JSON Schemas and data files shipped with the tool, loaded by name."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


@cache
def load(name: str) -> Any:
    """Parse ``schemas/<name>`` (a JSON file shipped in the package). Read beside this module when
    it is on disk (importlib.resources costs more than the read), else through resources."""
    here = Path(__file__).with_name(name)
    if here.is_file():
        return json.loads(here.read_text(encoding="utf-8"))
    from importlib import resources

    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))
