"""The one entry point that builds a model from a config: ``model.architecture`` selects
the meta-architecture (``upsnet_core.config.ARCHITECTURES``)."""
from __future__ import annotations

from typing import Callable

from ..config import UPSNetConfig
from .hps import HPS, build_hps
from .meta_arch import PanopticModel
from .panoptic_deeplab import PanopticDeepLab, build_panoptic_deeplab
from .panoptic_fpn import PanopticFPN, build_panoptic_fpn
from .upsnet import UPSNet, build_upsnet

BUILDERS: dict[str, Callable[[UPSNetConfig], PanopticModel]] = {
    "upsnet": build_upsnet,
    "panoptic_fpn": build_panoptic_fpn,
    "panoptic_deeplab": build_panoptic_deeplab,
    "hps": build_hps,
}
"""One builder per name of ``upsnet_core.config.ARCHITECTURES``."""

MERGES = tuple(dict.fromkeys(merge for model in (UPSNet, PanopticFPN, PanopticDeepLab, HPS)
                             for merge in model.merges))
"""Every merge some architecture offers (``predict(merge=...)``; each accepts its own)."""


def build_model(config: UPSNetConfig) -> PanopticModel:
    """An (untrained, or backbone-initialised) model of ``config.model.architecture``."""
    architecture = config.model.architecture
    if architecture not in BUILDERS:
        raise ValueError(f"unknown model.architecture {architecture!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[architecture](config)
