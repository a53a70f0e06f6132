"""Model configuration: a typed schema whose defaults are the paper's, overridden by YAML.

A YAML file names only what differs from the defaults below. Unknown keys are errors
(a typo must not silently fall back to a default). The ``training`` and ``data``
sections belong to the training pipeline and are kept as plain mappings here.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .categories import CategorySet


BACKBONE_NAMES = ("resnet", "mobilenet_v2", "mobilenet_v3_large")
"""Bodies :func:`upsnet_core.modeling.backbone.build_backbone` puts under the FPN."""


@dataclass
class BackboneConfig:
    name: str = "resnet"
    """Body under the FPN: ``resnet`` (the paper's), ``mobilenet_v2`` or ``mobilenet_v3_large``
    (torchvision's, lighter: ``upsnet_core.modeling.backbone.BODIES``)."""
    depth: int = 50
    """ResNet depth: 18, 34, 50 or 101 (``name: resnet`` only)."""
    norm: str = "frozen_bn"
    """``frozen_bn`` (paper; for pretrained weights) or ``bn`` (training from scratch)."""
    trainable_layers: int = 3
    """Stages trained, counted from the stride-32 stage (0..5; 5 includes the stem), as
    torchvision counts them."""
    global_context: bool = False
    """Add globally pooled res5 features to the FPN's top lateral before P5 (paper's COCO setting)."""
    weights: str | None = None
    """torchvision-format state dict of the body to start from (no downloads): a file, or
    ``package:<module>/<path>`` for a file shipped inside an installed Python package."""
    fpn_channels: int = 256


@dataclass
class RPNConfig:
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    """One anchor size per FPN level P2..P6."""
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 2000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5


@dataclass
class RoIHeadsConfig:
    representation_size: int = 1024
    mask_head_layers: list[int] = field(default_factory=lambda: [256, 256, 256, 256])
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    score_thresh: float = 0.05
    """Detections kept by torchvision's per-class post-processing (before mask pruning)."""
    nms_thresh: float = 0.5
    detections_per_img: int = 100


@dataclass
class SemanticHeadConfig:
    channels: int = 128
    num_deform_layers: int = 2
    norm_groups: int = 32


@dataclass
class InferenceConfig:
    nms_iou: float = 0.5
    """Class-agnostic NMS IoU of mask pruning."""
    score_threshold: float = 0.6
    """Detections at or below this score are not pasted."""
    mask_overlap_threshold: float = 0.3
    """A mask overlapping already pasted masks of its class by more than this fraction of its own area is dropped."""
    stuff_area: float = 2048.0
    """Stuff segments smaller than this (pixels at ``stuff_area_reference``) become unknown."""
    stuff_area_reference: list[int] = field(default_factory=lambda: [1024, 2048])
    """Image size (H, W) at which ``stuff_area`` is given; the threshold scales with the image area."""
    decision_stride: int = 1
    """Stride, in network-input pixels, of the grid on which each pixel's panoptic channel is
    chosen: 1 upsamples the heads' 1/4 logits bilinearly to the network input before the
    argmax (boundaries between the heads' cells, as the paper's full-size output), 2 or 4
    are cheaper and coarser (4: the heads' own grid)."""
    input_long_side: int = 0
    """Long side, in pixels, at which camera images are given to the network (aspect ratio
    kept; ``0``: their own size). Stored with the model so that the node and ``predict``
    feed it images at the scale it was trained for."""
    center_threshold: float = 0.1
    """Panoptic-DeepLab: centre-heatmap peaks at or below this are not instance centres."""
    center_kernel: int = 7
    """Panoptic-DeepLab: side (decision-grid cells) of the max-pooling window of centre NMS."""
    center_top_k: int = 200
    """Panoptic-DeepLab: at most this many centres (highest heatmap values) per image."""
    canvas_merge_iou: float = 0.5
    """HPS: canvas layers of one class whose masks overlap by more than this IoU are merged."""
    unknown_channel: bool = True
    """UPSNet: the panoptic head's unknown channel takes part in the argmax (the paper's);
    false gives each pixel the best stuff or instance channel (the ablation without it)."""


@dataclass
class LossWeights:
    rpn_objectness: float = 1.0
    rpn_box: float = 1.0
    box_cls: float = 1.0
    box_reg: float = 1.0
    mask: float = 1.0
    semantic: float = 1.0
    semantic_roi: float = 0.2
    panoptic: float = 0.5
    center: float = 200.0
    """Panoptic-DeepLab's centre-heatmap MSE (its paper's weight)."""
    offset: float = 0.01
    """Panoptic-DeepLab's offset L1, in pixels (its paper's weight)."""


@dataclass
class InputConfig:
    pixel_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    size_divisibility: int = 32


@dataclass
class PanopticDeepLabConfig:
    """Panoptic-DeepLab's decoders, heads and semantic loss (Cheng et al., CVPR 2020)."""
    aspp_channels: int = 256
    atrous_rates: list[int] = field(default_factory=lambda: [6, 12, 18])
    """Dilation rates of the ASPP's three 3x3 branches (output stride 16)."""
    semantic_decoder_channels: int = 256
    instance_decoder_channels: int = 128
    head_channels: int = 32
    """Width of the 3x3 conv before each prediction layer (semantic, centre, offset)."""
    norm_groups: int = 32
    center_sigma: float = 8.0
    """Standard deviation, in input pixels, of the Gaussian around each instance centre."""
    hard_pixel_fraction: float = 0.15
    """Hard-pixel mining: the semantic loss averages the worst this fraction of pixels."""
    small_instance_area: int = 4096
    """Pixels of instances smaller than this (input pixels) weigh ``small_instance_weight``."""
    small_instance_weight: float = 3.0


@dataclass
class HPSConfig:
    """HPS (Kniewasser et al.): soft-argmax fusion and the initial segmentation image."""
    soft_argmax_beta: float = 100.0
    """The large constant beta of the soft-argmax (HPS eq. 1)."""
    initial_segmentation_image: bool = True
    """Feed instance predictions back into the semantic branch (HPS + ISI, section 3.2)."""
    refine_blocks: int = 4
    """3x3 conv + BN + ReLU blocks after concatenating the ISI (section 3.2: four)."""


ARCHITECTURES = ("upsnet", "panoptic_fpn", "panoptic_deeplab", "hps")
"""Values of ``model.architecture``; ``upsnet_core.modeling.build_model`` builds each."""

_PROPOSAL_BASED = frozenset({"upsnet", "panoptic_fpn", "hps"})
_RPN_ROI_LOSSES = ("rpn_objectness", "rpn_box", "box_cls", "box_reg", "mask")

ARCHITECTURE_KEYS: dict[str, frozenset[str]] = {
    "rpn": _PROPOSAL_BASED,
    "roi_heads": _PROPOSAL_BASED,
    "semantic_head": _PROPOSAL_BASED,
    "semantic_head.num_deform_layers": frozenset({"upsnet"}),
    "unknown_fraction": frozenset({"upsnet"}),
    "semantic_class_balance": _PROPOSAL_BASED,
    "inference.nms_iou": _PROPOSAL_BASED,
    "inference.score_threshold": _PROPOSAL_BASED,
    "inference.mask_overlap_threshold": _PROPOSAL_BASED,
    "inference.center_threshold": frozenset({"panoptic_deeplab"}),
    "inference.center_kernel": frozenset({"panoptic_deeplab"}),
    "inference.center_top_k": frozenset({"panoptic_deeplab"}),
    "inference.canvas_merge_iou": frozenset({"hps"}),
    "inference.unknown_channel": frozenset({"upsnet"}),
    **{f"loss_weights.{name}": _PROPOSAL_BASED for name in _RPN_ROI_LOSSES},
    "loss_weights.semantic_roi": frozenset({"upsnet"}),
    "loss_weights.panoptic": frozenset({"upsnet", "hps"}),
    "loss_weights.center": frozenset({"panoptic_deeplab"}),
    "loss_weights.offset": frozenset({"panoptic_deeplab"}),
    "panoptic_deeplab": frozenset({"panoptic_deeplab"}),
    "hps": frozenset({"hps"}),
}
"""Keys of ``model`` (dotted paths) that only some architectures read. A config of another
architecture that sets one is an error, and checkpoints store only their own."""


@dataclass
class ModelConfig:
    architecture: str = "upsnet"
    """One of :data:`ARCHITECTURES`: which meta-architecture the config builds."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    semantic_head: SemanticHeadConfig = field(default_factory=SemanticHeadConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    input: InputConfig = field(default_factory=InputConfig)
    unknown_fraction: float = 0.3
    """Fraction of ground-truth instances relabelled unknown for the panoptic loss."""
    loss_stride: int = 4
    """Stride, in input pixels, of the grid of the semantic and panoptic losses: 4 = the
    heads' own grid, labels taken at cell centres; 1 or 2 = the heads' logits (and the
    pasted mask logits) upsampled bilinearly, as inference does with ``decision_stride``,
    so thin and small regions that fall between cell centres are supervised too."""
    semantic_class_balance: float = 0.0
    """p >= 0: the semantic cross entropy weights each pixel by its class's pixel count in
    the batch to the power -p (0: plain mean; 1: every class present weighs the same)."""
    panoptic_deeplab: PanopticDeepLabConfig = field(default_factory=PanopticDeepLabConfig)
    hps: HPSConfig = field(default_factory=HPSConfig)


@dataclass
class UPSNetConfig:
    categories: Any = "cityscapes"
    """A preset name, a list of categories, or {preset|json|list, classes} (see CategorySet.from_config)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def category_set(self) -> CategorySet:
        return CategorySet.from_config(self.categories)

    def resolved(self) -> "UPSNetConfig":
        """A copy whose categories are an explicit list (self-contained, e.g. for checkpoints)."""
        return dataclasses.replace(self, categories=self.category_set().to_list())

    def to_dict(self) -> dict:
        """Plain mapping of the config; ``model`` holds only the keys its architecture reads."""
        values = dataclasses.asdict(self)
        architecture = self.model.architecture
        for path, owners in ARCHITECTURE_KEYS.items():
            if architecture not in owners:
                *sections, key = path.split(".")
                parent = values["model"]
                for section in sections:
                    parent = parent.get(section, {})
                parent.pop(key, None)
        return values


def build_section(cls: type, values: Any, path: str):
    """Instantiate dataclass ``cls`` from a mapping, checking every value against its type
    hint and recursing into nested dataclasses; errors name the key (``path.key``)."""
    if not isinstance(values, dict):
        raise ValueError(f"config section '{path or 'root'}' must be a mapping, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in section '{path or 'root'}'; "
                         f"known keys: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _typed(hints[name], value, f"{path}.{name}" if path else name)
                  for name, value in values.items()})


def _typed(hint: Any, value: Any, key: str) -> Any:
    """``value`` checked against ``hint``: a dataclass, int, float, bool, str, dict,
    ``list[...]``, ``X | None`` or Any."""
    arguments = typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value, key)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _typed(next(a for a in arguments if a is not type(None)), value, key)
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise ValueError(f"config key '{key}' must be a list, got {value!r}")
        return [_typed(arguments[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"config key '{key}' must be {hint.__name__}, got {value!r}")
    return value


def check_architecture_keys(values: dict) -> None:
    """Raise when ``model.architecture`` is unknown or the ``model`` mapping sets a key that
    only other architectures read (:data:`ARCHITECTURE_KEYS`)."""
    model = values.get("model") if isinstance(values, dict) else None
    if not isinstance(model, dict):
        return  # build_section reports a malformed section
    architecture = model.get("architecture", "upsnet")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown model.architecture {architecture!r}; known architectures: "
                         f"{list(ARCHITECTURES)}")
    for path, owners in ARCHITECTURE_KEYS.items():
        if architecture not in owners and _has_path(model, path.split(".")):
            raise ValueError(f"config key 'model.{path}' belongs to architecture(s) "
                             f"{sorted(owners)}, not to model.architecture {architecture!r}")


def _has_path(values: dict, keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


def config_from_dict(values: dict) -> UPSNetConfig:
    """Validate a nested mapping (YAML or checkpoint) into an :class:`UPSNetConfig`."""
    check_architecture_keys(values)
    config = build_section(UPSNetConfig, values, "")
    validate(config)
    return config


def set_values(values: dict, settings: dict[str, Any]) -> dict:
    """A copy of the nested mapping ``values`` in which each dotted key of ``settings``
    (``"training.max_iters"``) takes its value; missing sections are created, so a key the
    file leaves at its default can be set too. Raises only when a key's section is a
    value; names and values are checked after, by :func:`config_from_dict`, as in a YAML
    file."""
    if not isinstance(values, dict):
        return values  # config_from_dict names the malformed file
    values = copy.deepcopy(values)
    for dotted, value in settings.items():
        *sections, key = dotted.split(".")
        parent = values
        for section in sections:
            child = parent.setdefault(section, {})
            if not isinstance(child, dict):
                raise ValueError(f"cannot set '{dotted}': config key '{section}' is not a section")
            parent = child
        parent[key] = value
    return values


def with_inference_settings(config: UPSNetConfig, settings: dict[str, Any]) -> UPSNetConfig:
    """A copy of ``config`` whose ``model.inference`` section takes ``settings``, checked
    as if they had been written in the YAML file (errors name ``model.inference.<key>``)."""
    return config_from_dict(set_values(
        config.to_dict(), {f"model.inference.{key}": value for key, value in settings.items()}))


def parse_setting(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``, the value read by :func:`parse_value`."""
    key, value = split_setting(text)
    return key, parse_value(value)


def split_setting(text: str) -> tuple[str, str]:
    """``"key=value"`` -> ``(key, "value")``, the value as written."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise ValueError(f"a setting must be written KEY=VALUE, got {text!r}")
    return key.strip(), value


def parse_value(text: str) -> Any:
    """A command-line value read as JSON (``0.4``, ``1e12``, ``512``, ``true``,
    ``[1024, 2048]``), or kept as text when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_config(path: str | Path, settings: Optional[dict[str, Any]] = None) -> UPSNetConfig:
    """Read a YAML config file, with ``settings`` (dotted keys, :func:`set_values`) written
    over it; errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = set_values(yaml.safe_load(path.read_text()) or {}, settings or {})
        return config_from_dict(values)
    except (ValueError, KeyError, yaml.YAMLError) as error:
        raise ValueError(f"invalid config {path}: {error}") from error


def validate(config: UPSNetConfig) -> None:
    """Cross-field checks that a single type check cannot express."""
    config.category_set()  # raises on unknown presets, class names or bad entries
    model = config.model
    if model.backbone.name not in BACKBONE_NAMES:
        raise ValueError(f"model.backbone.name must be one of {list(BACKBONE_NAMES)}, "
                         f"got {model.backbone.name!r}")
    if model.backbone.depth not in (18, 34, 50, 101):
        raise ValueError(f"model.backbone.depth must be 18, 34, 50 or 101, got {model.backbone.depth}")
    if model.backbone.norm not in ("frozen_bn", "bn"):
        raise ValueError(f"model.backbone.norm must be 'frozen_bn' or 'bn', got {model.backbone.norm!r}")
    if not 0 <= model.backbone.trainable_layers <= 5:
        raise ValueError("model.backbone.trainable_layers must be in 0..5")
    if len(model.rpn.anchor_sizes) != 5:
        raise ValueError("model.rpn.anchor_sizes needs one size per FPN level P2..P6 (5 values)")
    if not 0.0 <= model.unknown_fraction < 1.0:
        raise ValueError("model.unknown_fraction must be in [0, 1)")
    if model.semantic_class_balance < 0:
        raise ValueError("model.semantic_class_balance must be >= 0 (the power -p of the class "
                         f"pixel counts), got {model.semantic_class_balance}")
    if model.loss_stride not in (1, 2, 4):
        raise ValueError("model.loss_stride must be 1, 2 or 4 (it divides the heads' stride 4), "
                         f"got {model.loss_stride}")
    if len(model.inference.stuff_area_reference) != 2:
        raise ValueError("model.inference.stuff_area_reference must be [height, width]")
    if model.inference.decision_stride not in (1, 2, 4):
        raise ValueError("model.inference.decision_stride must be 1, 2 or 4 (it divides the "
                         f"heads' stride 4), got {model.inference.decision_stride}")
    if model.inference.input_long_side < 0:
        raise ValueError("model.inference.input_long_side must be >= 0 (0: the image's own "
                         f"size), got {model.inference.input_long_side}")
    if len(model.input.pixel_mean) != 3 or len(model.input.pixel_std) != 3:
        raise ValueError("model.input.pixel_mean and pixel_std need 3 values (RGB)")
    if model.input.size_divisibility % 32:
        raise ValueError("model.input.size_divisibility must be a multiple of 32 (the stride of P5)")
    if model.inference.center_kernel < 1 or model.inference.center_kernel % 2 == 0:
        raise ValueError("model.inference.center_kernel must be an odd number >= 1 (the centre "
                         f"NMS window is centred on its cell), got {model.inference.center_kernel}")
    if model.inference.center_top_k < 1:
        raise ValueError(f"model.inference.center_top_k must be >= 1, got {model.inference.center_top_k}")
    if not 0.0 < model.panoptic_deeplab.hard_pixel_fraction <= 1.0:
        raise ValueError("model.panoptic_deeplab.hard_pixel_fraction must be in (0, 1]")
    if model.hps.refine_blocks < 1:
        raise ValueError("model.hps.refine_blocks must be >= 1")
