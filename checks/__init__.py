"""The checks, one module per domain. ``CHECK_MODULES`` is the one list the registry reads."""

from npu_preflight.checks import (
    arch,
    config,
    data,
    dist,
    environment,
    init,
    memory,
    model_config,
    security,
    tokenizer,
    weights,
)

CHECK_MODULES = (config, weights, arch, dist, tokenizer, security, model_config, environment, memory, init, data)
