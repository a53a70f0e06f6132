"""Training and evaluation of UPSNet: ``python -m training.train`` (one process or
``torchrun``) and ``python -m training.evaluate``. See ``training/README.md``."""
