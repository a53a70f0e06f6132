"""Command line of the fleet-retraining loop, one sub-command per step.

    python -m training.fleet ingest   --config config/fleet.yaml [--max-frames N]
    python -m training.fleet label    --config config/fleet.yaml
    python -m training.fleet finetune --config config/fleet.yaml [--max-iters N]
    python -m training.fleet gate     --config config/fleet.yaml [--candidate CK] [--current CK]
    python -m training.fleet export   --config config/fleet.yaml [--candidate CK]
    python -m training.fleet run      --config config/fleet.yaml [--max-iters N]

``run`` does ingest, label, finetune, gate and, when the gate accepts, export. The
candidate is ``<work_dir>/finetune/last.pt`` and the current model ``finetune.base``
unless given. ``finetune`` is the step to start under ``torchrun`` for many processes or
machines. Exit codes: 0 done (gate: accepted), 3 the gate rejected the candidate (no
export), 2 a step failed with a message (missing files, bad config, nothing to train on),
the training run's code for ``finetune`` (130/143 when stopped by a signal).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from upsnet_core.checkpoint import CheckpointError

from .dataset import FleetDataset
from .finetune import finetune, run_folder
from .gate import gate, report_folder
from .ingest import ingest
from .labels import label
from .registry import GateError, export_candidate
from .settings import FleetSettings, load_fleet_settings

REJECTED = 3
FAILED = 2


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--config", required=True, type=Path, help="fleet YAML config")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="ingest: stop after this many kept frames, mid-bag, as a crash "
                             "would (for testing resume)")
    parser.add_argument("--max-iters", type=int, default=None,
                        help="finetune: stop after this many iterations")
    parser.add_argument("--candidate", type=Path, default=None,
                        help="gate/export: candidate checkpoint (default WORK/finetune/last.pt)")
    parser.add_argument("--current", type=Path, default=None,
                        help="gate: current model (default finetune.base)")
    return parser.parse_args(argv)


def _print(title: str, value: dict) -> None:
    print(f"{title}: {json.dumps(value, indent=2, sort_keys=True)}")


def step_ingest(settings: FleetSettings, args: argparse.Namespace) -> int:
    """0 when some bag gave frames (now or in an earlier run), also when others are
    damaged or unreadable (listed); 2 when no bag is usable at all."""
    report = ingest(settings.ingest, FleetDataset(settings.dataset), args.max_frames)
    _print("ingest", asdict(report))
    if report.failed and not (report.ingested or report.skipped or report.stopped_early):
        print(f"error: no usable bag in {settings.ingest.bags}: "
              + "; ".join(f"{bag}: {why}" for bag, why in report.failed.items()), file=sys.stderr)
        return FAILED
    return 0


def step_label(settings: FleetSettings, args: argparse.Namespace) -> int:
    _print("label", asdict(label(settings)))
    return 0


def step_finetune(settings: FleetSettings, args: argparse.Namespace) -> int:
    return finetune(settings, args.max_iters)


def step_gate(settings: FleetSettings, args: argparse.Namespace) -> int:
    report = gate(settings, args.candidate or run_folder(settings) / "last.pt",
                  args.current or Path(settings.finetune.base))
    print((report_folder(settings) / "report.md").read_text())
    return 0 if report["accepted"] else REJECTED


def step_export(settings: FleetSettings, args: argparse.Namespace) -> int:
    folder = export_candidate(settings, args.candidate or run_folder(settings) / "last.pt",
                              report_folder(settings) / "report.json")
    print(f"exported {folder}; node: --ros-args -p checkpoint:={folder / 'model.pt'}")
    return 0


def step_run(settings: FleetSettings, args: argparse.Namespace) -> int:
    for step in (step_ingest, step_label, step_finetune, step_gate, step_export):
        code = step(settings, args)
        if code:
            return code
    return 0


STEPS = {"ingest": step_ingest, "label": step_label, "finetune": step_finetune,
         "gate": step_gate, "export": step_export, "run": step_run}


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return STEPS[args.step](load_fleet_settings(args.config), args)
    except GateError as error:
        print(f"error: {error}", file=sys.stderr)
        return REJECTED
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
