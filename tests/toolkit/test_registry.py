"""Registry-wide rules: ids unique and well formed, every check documented, modules listed."""

from __future__ import annotations

import pkgutil

import pytest

from npu_preflight import checks
from npu_preflight.cli import registry
from npu_preflight.context import Context, fact
from npu_preflight.errors import UsageError
from npu_preflight.model import FACT_NAMES, Severity
from npu_preflight.registry import ID_PATTERN, check, specs_in


def all_checks() -> list:  # type: ignore[type-arg]
    return list(registry().specs)


def test_ids_unique_and_well_formed() -> None:
    specs = all_checks()
    assert len({s.id for s in specs}) == len(specs)
    for s in specs:
        assert ID_PATTERN.match(s.id), s.id
        assert isinstance(s.severity, Severity)


def test_every_check_has_explain_text_with_examples_and_fix() -> None:
    for s in all_checks():
        assert len(s.doc) > 80, s.id
        for section in ("Bad:", "Good:", "Fix:"):
            assert section in s.doc, f"{s.id} doc lacks {section}"
        assert (s.title and s.title[0].islower()) or s.title[0].isupper()


def test_every_check_module_is_listed() -> None:
    names = {m.name for m in pkgutil.iter_modules(checks.__path__)}
    listed = {m.__name__.split(".")[-1] for m in checks.CHECK_MODULES}
    assert names == listed
    for mod in checks.CHECK_MODULES:
        assert specs_in(mod), f"{mod.__name__} defines no checks"


def test_id_prefix_matches_module_domain() -> None:
    for mod in checks.CHECK_MODULES:
        prefixes = {s.id.rstrip("0123456789") for s in specs_in(mod)}
        assert len(prefixes) <= 2, (mod.__name__, prefixes)


def test_every_required_fact_is_a_context_fact() -> None:
    facts = {name for name, v in vars(Context).items() if isinstance(v, fact)} | {"mc"}
    assert facts == set(FACT_NAMES), set(FACT_NAMES) ^ facts
    for s in all_checks():
        assert set(s.requires) <= facts, (s.id, s.requires)


def test_a_typo_in_requires_fails_at_declaration() -> None:
    with pytest.raises(ValueError, match="unknown fact"):
        check("CFG999", "x", Severity.ERROR, requires=("confg",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not match"):
        check("XYZ001", "x", Severity.ERROR)


def test_selection_of_unknown_ids_is_a_usage_error_with_a_suggestion() -> None:
    reg = registry()
    reg.check_selection("--select", ("WT", "CFG002", "WT00"))
    with pytest.raises(UsageError, match=r"--select 'FOO' names no check"):
        reg.check_selection("--select", ("FOO",))
    with pytest.raises(UsageError, match=r"did you mean .*CFG002"):
        reg.check_selection("--ignore", ("CFG0002",))
