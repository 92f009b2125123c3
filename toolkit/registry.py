"""The check registry: a decorator that records a :class:`CheckSpec` on a function, and a
:class:`Registry` built from the modules it is handed (the app passes ``checks.CHECK_MODULES``; the
engine never imports a check)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType

from npu_preflight.errors import UsageError
from npu_preflight.model import (
    FACT_NAMES,
    PHASE_ORDER,
    RULE_BACKENDS,
    CheckFunc,
    CheckSpec,
    FactName,
    Phase,
    RuleBackend,
    Severity,
)
from npu_preflight.records import frozen

ID_PATTERN = re.compile(r"^(CFG|MC|ENV|WT|ARCH|TOK|SEC|MEM|INIT|DATA|DIST)\d{3}$")
_ATTR = "__preflight_spec__"


def check(
    id: str,
    title: str,
    severity: Severity,
    *,
    phase: Phase = Phase.STATIC,
    requires: tuple[FactName, ...] = (),
    backend: RuleBackend = "any",
    source: str = "",
) -> Callable[[CheckFunc], CheckFunc]:
    """Mark a function as a check; its docstring is the ``explain`` text, ``backend`` says whose
    behaviour the rule describes and ``source`` where that behaviour was read (``explain`` shows
    both; a test requires a source on every shipped check).

    A malformed id, an unknown fact name in ``requires`` or an unknown backend fails at import
    time, not mid-run.
    """
    if not ID_PATTERN.match(id):
        raise ValueError(f"check id {id!r} does not match {ID_PATTERN.pattern}")
    unknown = [r for r in requires if r not in FACT_NAMES]
    if unknown:
        raise ValueError(f"check {id}: requires unknown fact(s) {unknown}")
    if backend not in RULE_BACKENDS:
        raise ValueError(f"check {id}: backend {backend!r} is not one of {sorted(RULE_BACKENDS)}")

    def deco(func: CheckFunc) -> CheckFunc:
        spec = CheckSpec(
            id=id,
            title=title,
            severity=severity,
            phase=phase,
            requires=requires,
            doc=inspect.cleandoc(func.__doc__ or ""),
            func=func,
            backend=backend,
            source=source,
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


@frozen
class Registry:
    """Every check of the modules it was built from, ordered by phase then id."""

    specs: tuple[CheckSpec, ...]

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> Registry:
        """Collect the checks of ``modules``; raises if two share an id."""
        seen: dict[str, CheckSpec] = {}
        for mod in modules:
            for spec in specs_in(mod):
                if spec.id in seen:
                    raise RuntimeError(f"duplicate check id {spec.id}")
                seen[spec.id] = spec
        order = {p: i for i, p in enumerate(PHASE_ORDER)}
        return cls(tuple(sorted(seen.values(), key=lambda s: (order[s.phase], s.id))))

    @property
    def ids(self) -> list[str]:
        """Every id, in run order."""
        return [s.id for s in self.specs]

    def get(self, check_id: str) -> CheckSpec | None:
        """One check by id (case-insensitive)."""
        want = check_id.strip().upper()
        return next((s for s in self.specs if s.id == want), None)

    def suggest(self, text: str) -> list[str]:
        """Ids or domain prefixes close to ``text`` (for did-you-mean messages)."""
        want = text.strip().upper()
        pool = sorted({*self.ids, *(i.rstrip("0123456789") for i in self.ids)})
        starts = [p for p in pool if p.startswith(want)] if want else []
        import difflib

        return (starts or difflib.get_close_matches(want, pool, n=3, cutoff=0.6))[:5]

    def check_selection(self, option: str, items: Sequence[str]) -> None:
        """Every ``--select``/``--ignore`` item must be an id or the prefix of one; else a usage error."""
        for item in items:
            if not any(i.startswith(item) for i in self.ids):
                close = self.suggest(item)
                hint = f" (did you mean {', '.join(close)}?)" if close else " (see 'npu-preflight checks')"
                raise UsageError(f"{option} {item!r} names no check{hint}")
