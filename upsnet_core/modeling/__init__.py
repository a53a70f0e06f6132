"""UPSNet model: backbone, instance/semantic/panoptic heads, post-processing."""
from .postprocess import SEMANTIC_UNKNOWN, PanopticResult
from .upsnet import HEAD_STRIDE, UPSNet, build_upsnet

__all__ = ["HEAD_STRIDE", "PanopticResult", "SEMANTIC_UNKNOWN", "UPSNet", "build_upsnet"]
