"""Export step: an accepted candidate becomes a versioned model artifact.

::

    <registry>/upsnet-<name>-v<N>/
        model.pt          weights + config (upsnet_core.tools.export; float16 with ``half``)
        MODEL_CARD.md     what it is, where its data came from, how it compares
        metrics.json      the gate's comparison on the regression set
        provenance.json   base model, teacher, robots, bags, label sources, training config
        frames.jsonl      the dataset manifest: every training frame's provenance

``N`` is one more than the highest version of that name in the registry. The folder is
assembled under a temporary name and renamed, so a registry never holds half an
artifact. Only a candidate the gate accepted, with the very bytes the gate evaluated (its
SHA-256 is checked), is exported. The node loads the artifact by path:
``--ros-args -p checkpoint:=<registry>/upsnet-<name>-v<N>/model.pt``.
"""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import yaml

from upsnet_core.tools.export import export

from .dataset import FleetDataset, FrameRecord
from .files import sha256_of, write_json_atomic, write_text_atomic
from .finetune import config_path
from .settings import FleetSettings


class GateError(RuntimeError):
    """The candidate was not accepted by the gate (or is not the file it evaluated)."""


def next_version(registry: Path, name: str) -> int:
    """One more than the highest ``upsnet-<name>-v<N>`` in ``registry`` (1 when none)."""
    pattern = re.compile(rf"upsnet-{re.escape(name)}-v(\d+)")
    found = [int(m.group(1)) for p in registry.glob(f"upsnet-{name}-v*")
             if (m := pattern.fullmatch(p.name))] if registry.is_dir() else []
    return max(found, default=0) + 1


def accepted_report(report_path: Path, candidate: Path) -> dict:
    """The gate report, if it accepted exactly ``candidate``; GateError otherwise."""
    if not report_path.is_file():
        raise GateError(f"no gate report at {report_path}: run the gate step first")
    report = json.loads(report_path.read_text())
    if not report["accepted"]:
        raise GateError(f"the gate rejected the candidate ({report_path}): "
                        + "; ".join(report["reasons"]))
    if report["candidate"]["sha256"] != sha256_of(candidate):
        raise GateError(f"{candidate} is not the file the gate accepted ({report_path}); "
                        "run the gate again")
    return report


def data_provenance(frames: list[FrameRecord]) -> dict:
    """Robots, bags, frame counts and label sources of the training frames."""
    labelled = [f for f in frames if f.label]
    robots: dict[str, dict] = {}
    for frame in labelled:
        entry = robots.setdefault(frame.robot, {"bags": Counter(), "frames": 0})
        entry["bags"][frame.bag] += 1
        entry["frames"] += 1
    return {"frames": len(labelled), "unlabelled_frames": len(frames) - len(labelled),
            "label_sources": dict(Counter(f.label["source"] for f in labelled)),
            "teachers": sorted({f.label["teacher_sha256"] for f in labelled
                                if f.label["source"] == "teacher"}),
            "robots": {robot: {"frames": e["frames"], "bags": dict(sorted(e["bags"].items()))}
                       for robot, e in sorted(robots.items())}}


def export_candidate(settings: FleetSettings, candidate: Path, report_path: Path) -> Path:
    """Write the next version of the artifact (see the module docstring); its folder."""
    report = accepted_report(report_path, candidate)
    registry = Path(settings.export.registry)
    version = next_version(registry, settings.export.name)
    final = registry / f"upsnet-{settings.export.name}-v{version}"
    staging = registry / f".{final.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    export(candidate, staging / "model.pt", settings.export.half)
    dataset = FleetDataset(settings.dataset)
    shutil.copyfile(dataset.manifest_path, staging / "frames.jsonl")
    provenance = {
        "artifact": final.name, "version": version,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidate": {"checkpoint": str(candidate), "sha256": report["candidate"]["sha256"]},
        "base": {"checkpoint": settings.finetune.base, "sha256": sha256_of(settings.finetune.base)},
        "data": data_provenance(dataset.read_manifest()),
        "training_config": yaml.safe_load(config_path(settings).read_text())
        if config_path(settings).is_file() else None}
    metrics = {key: report[key] for key in ("accepted", "overall", "per_class",
                                             "regression_set", "current", "candidate")}
    write_json_atomic(staging / "provenance.json", provenance)
    write_json_atomic(staging / "metrics.json", metrics)
    write_text_atomic(staging / "MODEL_CARD.md", model_card(provenance, metrics, final, settings))
    staging.rename(final)
    return final


def model_card(provenance: dict, metrics: dict, folder: Path, settings: FleetSettings) -> str:
    """The artifact's MODEL_CARD.md."""
    data, current, candidate = provenance["data"], metrics["current"], metrics["candidate"]
    robots = ", ".join(f"{r} ({e['frames']} frames, {len(e['bags'])} bags)"
                       for r, e in data["robots"].items())
    sources = ", ".join(f"{n} {s}" for s, n in sorted(data["label_sources"].items()))
    gate = metrics["regression_set"]
    training = provenance["training_config"] or {}
    mix = ", ".join(f"`{m['root']}` {m['split']} (weight {m['weight']})"
                    for m in training.get("data", {}).get("train_mix", []))
    schedule = training.get("training", {})
    lines = [
        f"# {folder.name}", "",
        f"UPSNet fine-tuned by the fleet-retraining loop (`python -m training.fleet`) from "
        f"`{provenance['base']['checkpoint']}` (sha256 {provenance['base']['sha256'][:12]}), "
        f"created {provenance['created_utc']}.", "",
        "| | |", "| --- | --- |",
        f"| load | `checkpoint:={folder / 'model.pt'}` (node parameter), or "
        f"`upsnet_core.checkpoint.load_model` |",
        f"| weights | {'float16' if settings.export.half else 'float32'} |",
        f"| fleet data | {data['frames']} frames from {robots}; labels: {sources} |",
        f"| teachers (sha256) | {', '.join(t[:12] for t in data['teachers']) or 'none'} |",
        f"| training data | {mix} (the first: the fleet data) |",
        f"| schedule | {schedule.get('max_iters')} iterations, {schedule.get('images_per_batch')}"
        f" images per batch, base lr {schedule.get('base_lr')} |", "",
        f"## Regression set (`{gate['root']}` split `{gate['split']}`, "
        f"{candidate['images']} images)", "",
        "| | PQ | PQ things | PQ stuff | mIoU |", "| --- | --- | --- | --- | --- |"]
    for title, entry in (("this model", candidate), ("previous model", current)):
        m = entry["metrics"]
        lines.append(f"| {title} | {100 * m['pq']:.1f} | {100 * m['pq_things']:.1f} | "
                     f"{100 * m['pq_stuff']:.1f} | {100 * m['miou']:.1f} |")
    lines += ["", "Per-class PQ and the full comparison: `metrics.json`; every training "
              "frame's robot, bag, topic, stamp and label source: `frames.jsonl`."]
    return "\n".join(lines) + "\n"
