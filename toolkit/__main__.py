"""``python -m npu_preflight`` runs the CLI."""

from npu_preflight.cli import run

if __name__ == "__main__":
    run()
