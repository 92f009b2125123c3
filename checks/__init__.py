"""The checks, one module per domain. ``CHECK_MODULES`` is the one list the registry reads."""

from checks import config, weights

CHECK_MODULES = (config, weights)
