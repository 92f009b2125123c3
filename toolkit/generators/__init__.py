"""Generator adapters. They run inside the sandbox child, under the deployment's interpreter, and
are loaded by file path there; nothing in the tool's own process imports them."""

from pathlib import Path

GENERATORS_DIR = Path(__file__).resolve().parent
BUILTIN = ("transformers", "mindie")
