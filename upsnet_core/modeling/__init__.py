"""Panoptic models: UPSNet, Panoptic FPN, Panoptic-DeepLab and HPS on shared parts."""
from .build import MERGES, build_model
from .grid import HEAD_STRIDE
from .meta_arch import PanopticModel
from .postprocess import SEMANTIC_UNKNOWN, PanopticResult
from .upsnet import UPSNet, build_upsnet

__all__ = ["HEAD_STRIDE", "MERGES", "PanopticModel", "PanopticResult", "SEMANTIC_UNKNOWN", "UPSNet",
           "build_model", "build_upsnet"]
