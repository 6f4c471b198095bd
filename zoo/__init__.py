"""The shiftflow model zoo: seeded, calibrated, po2-quantized Brevitas networks as ONNX.

``zoo_model(name, variant, form)`` returns a cached file path (building it on first use);
``build_zoo`` builds many at once; ``python -m shiftflow.zoo`` is the command line. See
docs/zoo.md for the networks and the shape of the exported graphs.
"""

from .build import (
    FORMS,
    NETWORKS,
    VARIANTS,
    ZOO_VERSION,
    build_zoo,
    count_macs,
    default_cache_dir,
    model_filename,
    zoo_model,
)

__all__ = ["NETWORKS", "VARIANTS", "FORMS", "ZOO_VERSION", "build_zoo", "count_macs",
           "default_cache_dir", "model_filename", "zoo_model"]
