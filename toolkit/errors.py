"""Error types the toolkit raises on purpose; anything else escaping is an internal error."""


class PreflightError(Exception):
    """Base class for errors the tool reports to the user."""


class UsageError(PreflightError):
    """Bad command-line input or an unreadable input file (exit status 2)."""


class Unavailable(PreflightError):
    """A fact a check needs cannot be had; the check is skipped with this reason."""


class FactError(PreflightError):
    """A fact raised an unexpected exception while it was computed. The failure is cached: every
    check that needs the fact becomes ``errored`` with this traceback."""

    def __init__(self, fact: str, trace: str) -> None:
        super().__init__(f"fact {fact!r} failed")
        self.fact = fact
        self.trace = trace


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a fact mid-way. ``value`` is what the fact had come to (the init's
    ``interrupted`` outcome): the fact caches it so the report still shows it, then the run stops."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value
