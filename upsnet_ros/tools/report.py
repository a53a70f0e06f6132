"""Replay-evaluation report: ``report.json``, ``report.md`` and PNG plots (matplotlib, Agg).

Plots: ``latency.png`` (latency of each frame over the replay time), ``latency_hist.png``
(its histogram), ``pq_per_class.png`` (PQ per class, bars) and ``samples.png`` (a grid of
sample frames: image, ground truth, prediction, coloured with the categories' colours).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from upsnet_core.categories import CategorySet  # noqa: E402
from upsnet_core.evaluation.pq import format_table  # noqa: E402
from upsnet_core.visualization import colorize  # noqa: E402

PLOTS = {"latency": "latency.png", "latency_histogram": "latency_hist.png",
         "pq_per_class": "pq_per_class.png", "samples": "samples.png"}


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_latency(report: dict, path: Path) -> None:
    """Latency (ms) of each frame against its publish time (s since the first frame)."""
    figure, axes = plt.subplots(figsize=(8, 3.5))
    frames = report["per_frame"]
    axes.plot([f["published_s"] for f in frames], [f["latency_ms"] for f in frames], ".-")
    axes.set(xlabel="replay time [s]", ylabel="latency [ms]",
             title=f"latency per frame ({len(frames)} frames)")
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_latency_histogram(report: dict, path: Path) -> None:
    """Histogram of the per-frame latencies with p50/p90/p99 marked."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist([f["latency_ms"] for f in report["per_frame"]], bins=30)
    for name, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        axes.axvline(report["latency_ms"][name], color="k", linestyle=style, label=name)
    axes.set(xlabel="latency [ms]", ylabel="frames", title="latency histogram")
    axes.legend()
    _save(figure, path)


def plot_pq_per_class(report: dict, path: Path) -> None:
    """PQ of every class (percent) as bars, things and stuff coloured apart."""
    per_class, names = report["pq"]["per_class"], report["class_names"]
    ids = sorted(per_class, key=int)
    figure, axes = plt.subplots(figsize=(max(6, 0.45 * len(ids)), 4))
    axes.bar(range(len(ids)), [100 * per_class[i]["pq"] for i in ids])
    axes.set_xticks(range(len(ids)), [names.get(i, str(i)) for i in ids], rotation=60,
                    ha="right")
    axes.set(ylabel="PQ [%]", ylim=(0, 100),
             title=f"PQ per class (All {100 * report['pq']['All']['pq']:.1f})")
    _save(figure, path)


def plot_samples(samples: list[dict], categories: CategorySet, path: Path) -> None:
    """One row per sample frame: image, ground truth, prediction."""
    figure, axes = plt.subplots(len(samples), 3, figsize=(12, 2.6 * len(samples)), squeeze=False)
    for row, sample in zip(axes, samples):
        panels = (sample["image"], colorize(sample["ground_truth"], categories),
                  colorize(sample["prediction"], categories))
        for axis, panel, title in zip(row, panels, ("image", "ground truth", "prediction")):
            axis.imshow(panel)
            axis.set_title(f"{title} @ {sample['stamp']}", fontsize=8)
            axis.axis("off")
    _save(figure, path)


def write_plots(report: dict, samples: list[dict], categories: CategorySet,
                out: Path) -> dict[str, str]:
    """The plots that the report's data allows (no latency plots without publish times);
    ``{plot: file name}``."""
    makers: dict[str, Callable[[Path], None]] = {
        "pq_per_class": lambda p: plot_pq_per_class(report, p),
        "samples": lambda p: plot_samples(samples, categories, p)}
    if report["per_frame"]:
        makers["latency"] = lambda p: plot_latency(report, p)
        makers["latency_histogram"] = lambda p: plot_latency_histogram(report, p)
    for name, make in makers.items():
        make(out / PLOTS[name])
    return {name: PLOTS[name] for name in makers}


def summary(report: dict) -> str:
    """A few lines: PQ/SQ/RQ, mIoU, latency and frame counts."""
    pq, frames = report["pq"], report["frames"]
    lines = [f"PQ {100 * pq['All']['pq']:.1f} (things {100 * pq['Things']['pq']:.1f}, stuff "
             f"{100 * pq['Stuff']['pq']:.1f}), SQ {100 * pq['All']['sq']:.1f}, RQ "
             f"{100 * pq['All']['rq']:.1f}, mIoU {100 * report['miou']:.1f}, mask AP "
             f"{100 * report['mask_ap']['AP']:.1f}"]
    latency = report["latency_ms"]
    if latency:
        lines.append(f"latency ms: p50 {latency['p50']:.1f}, p90 {latency['p90']:.1f}, p99 "
                     f"{latency['p99']:.1f}, max {latency['max']:.1f}; throughput "
                     f"{report['throughput_fps']:.2f} frames/s")
    else:
        lines.append("latency: not measured (the predictions bag has no published images)")
    lines.append(f"frames: {frames['images']} images, {frames['ground_truth']} with ground truth, "
                 f"{frames['processed']} processed, {frames['dropped']} dropped, "
                 f"{frames['evaluated']} evaluated")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """``report.md``: summary, PQ table, unmatched frames, settings and plots."""
    sections = ["# Replay evaluation", "", f"Input bag `{report['input_bag']}`, predictions bag "
                f"`{report['predictions_bag']}` (labels `{report['labels_topic']}`).", "",
                "## Summary", "", "```", summary(report), "```", "",
                "## Panoptic quality (percent)", "", "```",
                format_table(report["pq"], report["class_names"]), "```", "",
                "## Unmatched frames", ""]
    for name, stamps in report["unmatched"].items():
        shown = ", ".join(stamps[:20]) + (" ..." if len(stamps) > 20 else "")
        sections.append(f"- {name.replace('_', ' ')}: {len(stamps)}{': ' + shown if stamps else ''}")
    if report.get("replay"):
        sections += ["", "## Replay", "", "```", json.dumps(report["replay"], indent=2), "```"]
    if report["node_diagnostics"]:
        sections += ["", "## Node diagnostics (last)", ""]
        sections += [f"- {k}: {v}" for k, v in report["node_diagnostics"].items()]
    sections += ["", "## Plots", ""]
    sections += [f"![{name}]({file})" for name, file in report.get("plots", {}).items()]
    return "\n".join(sections) + "\n"


def write_report(report: dict, samples: list[dict], categories: CategorySet, out: Path) -> Path:
    """Write the plots, ``report.json`` and ``report.md`` into ``out``; the JSON's path."""
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = write_plots(report, samples, categories, out)
    (out / "report.md").write_text(markdown(report))
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2))
    return path
