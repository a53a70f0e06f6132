"""Panoptic (PQ), semantic (mIoU) and instance (mask AP) evaluation."""
from .instance import InstanceEvaluator
from .pq import PanopticEvaluator, evaluate_files
from .results import PanopticResultEvaluator
from .semantic import SemanticEvaluator, confusion_matrix

__all__ = ["InstanceEvaluator", "PanopticEvaluator", "PanopticResultEvaluator",
           "SemanticEvaluator", "confusion_matrix", "evaluate_files"]
