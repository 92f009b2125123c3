"""The check registry: a decorator that records a :class:`CheckSpec` on a function, and the list of
all checks gathered from the modules named in ``checks.CHECK_MODULES`` (no import side effects)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from types import ModuleType

from toolkit.model import PHASE_ORDER, CheckFunc, CheckSpec, Phase, Severity

ID_PATTERN = re.compile(r"^(CFG|MC|ENV|WT|ARCH|TOK|SEC|MEM|INIT|DATA|DIST)\d{3}$")
_ATTR = "__preflight_spec__"


def check(
    id: str,
    title: str,
    severity: Severity,
    *,
    phase: Phase = Phase.STATIC,
    requires: tuple[str, ...] = (),
) -> Callable[[CheckFunc], CheckFunc]:
    """Mark a function as a check; its docstring is the ``explain`` text."""

    def deco(func: CheckFunc) -> CheckFunc:
        spec = CheckSpec(
            id=id,
            title=title,
            severity=severity,
            phase=phase,
            requires=requires,
            doc=inspect.cleandoc(func.__doc__ or ""),
            func=func,
        )
        setattr(func, _ATTR, spec)
        return func

    return deco


def specs_in(module: ModuleType) -> list[CheckSpec]:
    """The checks defined in one module, in source order."""
    out = []
    for value in vars(module).values():
        spec = getattr(value, _ATTR, None)
        if isinstance(spec, CheckSpec) and getattr(value, "__module__", None) == module.__name__:
            out.append(spec)
    return out


def all_checks() -> list[CheckSpec]:
    """Every registered check, ordered by phase then id. Raises if two share an id."""
    from checks import CHECK_MODULES

    seen: dict[str, CheckSpec] = {}
    for mod in CHECK_MODULES:
        for spec in specs_in(mod):
            if spec.id in seen:
                raise RuntimeError(f"duplicate check id {spec.id}")
            seen[spec.id] = spec
    order = {p: i for i, p in enumerate(PHASE_ORDER)}
    return sorted(seen.values(), key=lambda s: (order[s.phase], s.id))


def get(check_id: str) -> CheckSpec | None:
    """Look one check up by id (case-insensitive)."""
    for spec in all_checks():
        if spec.id == check_id.upper():
            return spec
    return None
