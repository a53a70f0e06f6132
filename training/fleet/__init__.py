"""Fleet retraining: bags recorded by robots -> a better model that robots load.

    python -m training.fleet ingest|label|finetune|gate|export|run --config config/fleet.yaml

One module per step: :mod:`.ingest` (bags -> frames, resumable), :mod:`.labels` (human
annotations via :mod:`.human`, teacher pseudo-labels via :mod:`.teacher`),
:mod:`.finetune` (``training.train`` on fleet + original data), :mod:`.gate` (regression
check, report), :mod:`.registry` (versioned artifact); :mod:`.dataset` is the dataset
layout and manifest, :mod:`.settings` the config. See training/README.md,
"Fleet retraining".
"""
