"""UPSNet against the combined method (separate semantic and instance networks + heuristic
merge), the paper's speed comparison (Table 5), on the same images and the same machine.

    python benchmarks/compare_combined.py [--config config/upsnet_cityscapes_r50.yaml] \\
        [--sizes 512x1024 1024x2048] [--runs 3] [--warmup 1] [--device cpu] [--json OUT]

(a) unified: UPSNet from the config (ResNet-50-FPN), end to end as
    ``upsnet_core.tools.benchmark`` times it (same stages).
(b) combined, as the paper's 'MR-CNN-PSP': a semantic segmentation network with its own
    ResNet-50 (torchvision's DeepLabV3-ResNet50, dilated, output stride 8: torchvision
    has no PSPNet; it is the same kind of network), a separate Mask R-CNN with its own
    ResNet-50-FPN (torchvision's), then the heuristic merge: UPSNet's own
    ``merge="heuristic"`` post-processing (instances pasted by score without overlap,
    stuff from the semantic logits elsewhere), fed with the two networks' outputs.

All weights are random (timing only: nothing can be downloaded here) and detections are
forced through: score thresholds 0 in both Mask R-CNN heads and in the pruning before the
merge, so both post-processings work on up to ``detections_per_img`` instances. Both
methods get the same normalised, padded image tensor; torchvision's own resizing
transform is not used (it would rescale to 800 px), and Mask R-CNN's masks are taken as
28x28 before torchvision pastes them at image size (the merge pastes them on its decision
grid, as UPSNet does): that favours the combined method, never UPSNet. Its RoI pools get
their inputs made contiguous once, as UPSNet's instance branch does
(:func:`~upsnet_core.modeling.instance_head.roi_pool_inputs`), so that both instance
branches run the same code on the same layout.

The two methods take turns run by run, so that a machine that gets busier (other jobs)
slows both alike. Printed per size: each method's stages (median ms), the ratio combined / unified and
the share of UPSNet's panoptic head + post-processing in its total. ``--decision-stride``
sets the grid on which both merges decide (the config's by default: 1, the network input;
4 is the heads' own 1/4 grid).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.segmentation import deeplabv3_resnet50

from upsnet_core.config import load_config, with_inference_settings
from upsnet_core.inference import device_name, prepare_for_inference, resolve_device
from upsnet_core.modeling import HEAD_STRIDE, build_upsnet
from upsnet_core.modeling.instance_head import roi_pool_inputs
from upsnet_core.tools.benchmark import STAGES, image_size, medians, timed_runs

ROOT = Path(__file__).resolve().parents[1]
COMBINED_STAGES = ("semantic_network", "mask_rcnn", "heuristic_merge")


def forced_upsnet(config_path: Path, decision_stride: int | None = None):
    """UPSNet with random weights whose detections all reach the panoptic head; its
    decision grid from the config unless ``decision_stride`` is given."""
    config = load_config(config_path)
    config.model.roi_heads.score_thresh = 0.0
    settings = {"score_threshold": 0.0}
    if decision_stride:
        settings["decision_stride"] = decision_stride
    config = with_inference_settings(config, settings)
    torch.manual_seed(0)
    return build_upsnet(config)


class CombinedMethod:
    """Separate semantic network + Mask R-CNN + UPSNet's heuristic merge (module docstring).

    ``merger`` is the UPSNet whose ``postprocess(merge="heuristic")`` does the merge (its
    categories, thresholds and decision grid); only its post-processing is used.
    """

    def __init__(self, merger, device: torch.device):
        categories, roi = merger.categories, merger.instance_head.roi_heads
        torch.manual_seed(1)
        self.semantic = prepare_for_inference(
            deeplabv3_resnet50(weights=None, weights_backbone=None,
                               num_classes=categories.num_classes, aux_loss=False), device)
        self.mask_rcnn = prepare_for_inference(
            maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                  num_classes=categories.num_things + 1, box_score_thresh=0.0,
                                  box_detections_per_img=roi.detections_per_img), device)
        self.merger = merger

    def semantic_logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H_pad/4, W_pad/4)``: DeepLabV3's stride-8 logits upsampled to the merge's
        input grid (the heads' 1/4 grid)."""
        logits = self.semantic.classifier(self.semantic.backbone(images)["out"])
        size = [side // HEAD_STRIDE for side in images.shape[-2:]]
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def instances(self, batch: ImageList) -> tuple[list[dict], list[torch.Tensor]]:
        """Mask R-CNN detections per image and their own-class 28x28 mask logits."""
        model = self.mask_rcnn
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
        # the RoI pools' inputs made contiguous once, as UPSNet's instance branch does
        detections, _ = model.roi_heads(roi_pool_inputs(features), proposals, batch.image_sizes)
        masks = [torch.logit(d.pop("masks")[:, 0], eps=1e-6) for d in detections]
        return detections, masks

    def predict(self, image: torch.Tensor, timer) -> list:
        merger = self.merger
        batch = merger.batcher([image])
        with timer("semantic_network"):
            logits = self.semantic_logits(batch.tensors)
        with timer("mask_rcnn"):
            detections, masks = self.instances(batch)
        with timer("heuristic_merge"):
            kept = []
            for detection, mask in zip(detections, masks):
                detection["mask_logits"] = mask
                kept.append(merger.prune(detection))
            return merger.postprocess(logits, kept, [k.pop("mask_logits") for k in kept],
                                      batch.image_sizes, batch.image_sizes, "heuristic")


def compare(config: Path, height: int, width: int, runs: int, warmup: int,
            device: torch.device, decision_stride: int | None = None) -> dict:
    """Both methods on the same random image; medians per stage and the two ratios."""
    upsnet = prepare_for_inference(forced_upsnet(config, decision_stride), device)
    combined = CombinedMethod(upsnet, device)
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    counts: dict[str, int] = {}

    def unified(timer) -> None:
        with torch.inference_mode():
            result = upsnet.predict([image], timer=timer)[0]
        counts["unified_instances"] = sum(s["isthing"] for s in result.segments)

    def separate(timer) -> None:
        with torch.inference_mode():
            result = combined.predict(image, timer)[0]
        counts["combined_instances"] = sum(s["isthing"] for s in result.segments)

    timers = timed_runs({"unified": unified, "combined": separate}, device, runs, warmup)
    report = {"unified": medians(timers["unified"], STAGES),
              "combined": medians(timers["combined"], COMBINED_STAGES)}
    report["combined_over_unified"] = report["combined"]["total_ms"] / report["unified"]["total_ms"]
    report["panoptic_share_of_unified"] = (report["unified"]["stages_ms"]["panoptic_postprocess"]
                                           / report["unified"]["total_ms"])
    report.update(counts, height=height, width=width,
                  decision_stride=upsnet.inference_config.decision_stride)
    return report


def print_report(report: dict) -> None:
    print(f"{report['height']}x{report['width']} (decision stride {report['decision_stride']}):")
    for method in ("unified", "combined"):
        figures = report[method]
        stages = ", ".join(f"{k} {v:.0f}" for k, v in figures["stages_ms"].items())
        print(f"  {method:<9} total {figures['total_ms']:8.0f} ms  ({stages}; "
              f"{report[method + '_instances']} instances)")
    print(f"  combined / unified: {report['combined_over_unified']:.2f}x")
    print(f"  panoptic head + post-processing: {100 * report['panoptic_share_of_unified']:.1f}% "
          f"of UPSNet's time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "upsnet_cityscapes_r50.yaml")
    parser.add_argument("--sizes", nargs="+", type=image_size,
                        default=[(512, 1024), (1024, 2048)],
                        help="HEIGHTxWIDTH of the test images")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decision-stride", type=int, choices=(1, 2, 4),
                        help="decision grid of both merges (default: the config's)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default, one per core)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"{args.config} (random weights, detections forced), {device_name(device)}, "
          f"torch {torch.__version__}, {args.runs} runs after {args.warmup} warm-up")
    reports = []
    for height, width in args.sizes:
        reports.append(compare(args.config, height, width, args.runs, args.warmup, device,
                               args.decision_stride))
        print_report(reports[-1])
    if args.json:
        args.json.write_text(json.dumps({"device": device_name(device), "config": str(args.config),
                                         "results": reports}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
