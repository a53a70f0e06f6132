"""Gate step: is the candidate at least as good as the current model on a fixed set?

Both models are evaluated by :func:`training.validation.evaluate_model` (the code of
``training.evaluate``) on the regression set, each at the test size of its own config.
The candidate is accepted only if its PQ is at most ``max_pq_drop`` below the current
model's, and no class's PQ is more than ``max_class_pq_drop`` below. The comparison is
written as ``<work_dir>/gate/report.json`` and ``report.md``.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from upsnet_core.checkpoint import load_model
from upsnet_core.inference import resolve_device

from ..data import load_split
from ..settings import data_settings
from ..validation import evaluate_model, headline
from .files import sha256_of, write_json_atomic, write_text_atomic
from .settings import FleetSettings, GateSettings


def report_folder(settings: FleetSettings) -> Path:
    return Path(settings.work_dir) / "gate"


def evaluate_on_regression_set(checkpoint: Path, gate: GateSettings) -> dict:
    """Headline metrics, per-class PQ and the file's hash of one model on the regression set."""
    if gate.root is None:
        raise ValueError("no regression set: set gate.root in the fleet config")
    model, config = load_model(checkpoint)
    data = replace(data_settings(config), kind=gate.kind)
    dataset = load_split(data, gate.split, model.categories, root=gate.root)
    device = resolve_device(gate.device)
    results = evaluate_model(model.to(device), dataset, data, device, max_images=gate.max_images)
    names = results["class_names"]
    return {"checkpoint": str(checkpoint), "sha256": sha256_of(checkpoint),
            "images": results["images"], "metrics": headline(results),
            "per_class_pq": {names[c]: r["pq"] for c, r in results["pq"]["per_class"].items()}}


def compare(current: dict, candidate: dict, gate: GateSettings) -> dict:
    """The gate's decision and the comparison behind it (PQ as fractions)."""
    overall = _row(current["metrics"]["pq"], candidate["metrics"]["pq"], gate.max_pq_drop)
    classes = {name: _row(pq, candidate["per_class_pq"][name], gate.max_class_pq_drop)
               for name, pq in current["per_class_pq"].items()}
    reasons = [] if overall["ok"] else [
        f"PQ drops by {-overall['delta']:.4f} (> {gate.max_pq_drop})"]
    reasons += [f"class {name}: PQ drops by {-row['delta']:.4f} (> {gate.max_class_pq_drop})"
                for name, row in classes.items() if not row["ok"]]
    return {"accepted": not reasons, "reasons": reasons, "overall": overall,
            "per_class": classes}


def _row(current: float, candidate: float, margin: float) -> dict:
    delta = candidate - current
    return {"current": current, "candidate": candidate, "delta": delta,
            "ok": delta >= -margin - 1e-12}


def gate(settings: FleetSettings, candidate: Path, current: Path) -> dict:
    """Evaluate both models, decide, write the JSON and markdown reports; the report."""
    results = {"current": evaluate_on_regression_set(current, settings.gate),
               "candidate": evaluate_on_regression_set(candidate, settings.gate)}
    report = {**compare(results["current"], results["candidate"], settings.gate),
              "regression_set": asdict(settings.gate), **results}
    folder = report_folder(settings)
    write_json_atomic(folder / "report.json", report)
    write_text_atomic(folder / "report.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    """The report as a markdown page: decision, headline metrics, per-class PQ."""
    current, candidate = report["current"], report["candidate"]
    gate = report["regression_set"]
    lines = [f"# Gate: {'ACCEPTED' if report['accepted'] else 'REJECTED'}", "",
             f"Regression set: `{gate['root']}` split `{gate['split']}`, "
             f"{candidate['images']} images. Margins: PQ {gate['max_pq_drop']}, "
             f"per class {gate['max_class_pq_drop']}.", "",
             f"- current: `{current['checkpoint']}` (sha256 {current['sha256'][:12]})",
             f"- candidate: `{candidate['checkpoint']}` (sha256 {candidate['sha256'][:12]})", ""]
    lines += [f"- {reason}" for reason in report["reasons"]] + [""] * bool(report["reasons"])
    lines += ["| metric | current | candidate | change |", "| --- | --- | --- | --- |"]
    for name, value in current["metrics"].items():
        lines.append(f"| {name} | {100 * value:.1f} | {100 * candidate['metrics'][name]:.1f} | "
                     f"{100 * (candidate['metrics'][name] - value):+.1f} |")
    lines += ["", "| class | PQ current | PQ candidate | change | ok |",
              "| --- | --- | --- | --- | --- |"]
    for name, row in report["per_class"].items():
        lines.append(f"| {name} | {100 * row['current']:.1f} | {100 * row['candidate']:.1f} | "
                     f"{100 * row['delta']:+.1f} | {'yes' if row['ok'] else 'NO'} |")
    return "\n".join(lines) + "\n"
