"""The deformable convolution's two forms on the ResNet-50 semantic head's P2 layers.

    source scripts/env.sh && python benchmarks/bench_deform_conv.py [--threads 1] \\
        [--size 128x256] [--runs 5] [--device cpu]

Times, on channels-last inputs as inference gives them (median ms after a warm-up, the
forms taking turns), the form that PyTorch runs (``embedding_bag`` gathers, projected
first when the layer has fewer outputs than inputs) and the exported form (``grid_sample``
+ a 1x1 convolution, what the ONNX graph holds) for the head's two layers: 256->128 and
128->128 channels on a P2 map of ``--size`` (128x256: a 512x1024 image), offsets of a
few pixels. Prints the largest difference between the two forms' outputs too.
"""
from __future__ import annotations

import argparse
import sys

import torch

from upsnet_core.inference import device_name, resolve_device
from upsnet_core.modeling.deform_conv import _sampled_by_grid_sample, deform_conv2d
from upsnet_core.tools.benchmark import image_size, medians, timed_runs

LAYERS = ((256, 128), (128, 128))
"""(input, output) channels of the R50 config's two deformable layers."""


def bench_layer(in_channels: int, out_channels: int, height: int, width: int, runs: int,
                device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, in_channels, height, width, generator=generator)
    offset = 2 * torch.randn(1, 18, height, width, generator=generator)
    weight = 0.05 * torch.randn(out_channels, in_channels, 3, 3, generator=generator)
    inputs, offset = (t.to(device).contiguous(memory_format=torch.channels_last)
                      for t in (inputs, offset))
    weight = weight.to(device)
    forms = {"gathers": lambda: deform_conv2d(inputs, offset, weight),
             "grid_sample": lambda: _sampled_by_grid_sample(inputs, offset, weight)}
    with torch.inference_mode():
        timers = timed_runs({name: lambda timer, form=form: form() for name, form in forms.items()},
                            device, runs, warmup=1)
        difference = (forms["gathers"]() - forms["grid_sample"]()).abs().max().item()
    return {name: medians(timer)["total_ms"] for name, timer in timers.items()} | {
        "max_difference": difference}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="128x256", type=image_size,
                        help="HEIGHTxWIDTH of the P2 map")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default, one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    height, width = args.size
    print(f"deformable 3x3 convolution on {height}x{width}, {device_name(device)}, "
          f"torch {torch.__version__}, median of {args.runs} runs")
    for in_channels, out_channels in LAYERS:
        figures = bench_layer(in_channels, out_channels, height, width, args.runs, device)
        print(f"  {in_channels:>3} -> {out_channels:<3}  gathers {figures['gathers']:7.1f} ms  "
              f"grid_sample + 1x1 {figures['grid_sample']:7.1f} ms  "
              f"({figures['grid_sample'] / figures['gathers']:.2f}x; outputs differ by at most "
              f"{figures['max_difference']:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
