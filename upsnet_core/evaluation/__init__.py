"""Panoptic (PQ), semantic (mIoU) and instance (mask AP) evaluation."""
from .instance import InstanceEvaluator
from .pq import PanopticEvaluator, evaluate_files
from .semantic import SemanticEvaluator, confusion_matrix

__all__ = ["InstanceEvaluator", "PanopticEvaluator", "SemanticEvaluator", "confusion_matrix",
           "evaluate_files"]
