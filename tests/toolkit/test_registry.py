"""Registry-wide rules: ids unique and well formed, every check documented, modules listed."""

from __future__ import annotations

import pkgutil

import checks
from toolkit.model import Severity
from toolkit.registry import ID_PATTERN, all_checks, specs_in


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
