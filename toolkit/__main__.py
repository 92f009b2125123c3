"""``python -m npu_preflight`` runs the CLI."""

from npu_preflight.cli import main

if __name__ == "__main__":
    main()
