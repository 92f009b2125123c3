"""User policy, applied outside the checks: which checks run (--select/--ignore) and the verdict."""

from __future__ import annotations

from npu_preflight.model import Report, Severity
from npu_preflight.records import frozen

EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def parse_ids(value: str | None) -> tuple[str, ...]:
    """Split a comma-separated list of ids or prefixes (``WT,CFG002``) into upper-case items."""
    if not value:
        return ()
    return tuple(p.strip().upper() for p in value.split(",") if p.strip())


@frozen
class Policy:
    """Selection by id prefix and the severity at which the verdict turns ``not_ready``."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: Severity = Severity.ERROR
    #: Checks a policy file ignores for this folder: (id or prefix, why, the file that says so).
    folder_ignores: tuple[tuple[str, str, str], ...] = ()

    def selected(self, check_id: str) -> bool:
        """Whether a check runs under this policy."""
        if self.select and not any(check_id.startswith(p) for p in self.select):
            return False
        if any(check_id.startswith(p) for p, _, _ in self.folder_ignores):
            return False
        return not any(check_id.startswith(p) for p in self.ignore)

    def deselect_reason(self, check_id: str = "") -> str:
        """Why a check was not run, for its skipped result."""
        for prefix, why, where in self.folder_ignores:
            if check_id.startswith(prefix):
                return f"ignored for this folder by {where}: {why}"
        parts = []
        if self.select:
            parts.append(f"--select {','.join(self.select)}")
        if self.ignore:
            parts.append(f"--ignore {','.join(self.ignore)}")
        return "deselected by " + " ".join(parts)


def exit_code(report: Report) -> int:
    """0 ready, 1 not ready, 3 when the tool could not vouch for the folder (a check errored)."""
    return {"ready": EXIT_READY, "not_ready": EXIT_NOT_READY, "error": EXIT_INTERNAL}[report.verdict]
