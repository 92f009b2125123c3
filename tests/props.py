"""Hypothesis settings for the property tests of every parser of untrusted bytes.

``make test`` runs them derandomized (profile ``ci``: the same examples every run, so CI never
fails at random); ``make fuzz`` runs the same properties long and random (profile ``fuzz``: a
fresh seed and 50× the examples). ``prop(n)`` scales a test's example count by the profile.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=_SUPPRESS)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True, suppress_health_check=_SUPPRESS)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
SCALE = 50 if PROFILE == "fuzz" else 1


def prop(examples: int, **kw: Any) -> Any:
    """``@prop(300)``: the property marker and settings with ``examples`` × the profile's scale."""
    s = settings(max_examples=examples * SCALE, **kw)

    def deco(func: Any) -> Any:
        return pytest.mark.property(s(func))

    return deco
