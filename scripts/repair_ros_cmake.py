#!/usr/bin/env python3
"""Point the ROS wheels' CMake files at this environment's Python and numpy headers.

The ROS 2 wheels from PyPI ship about 20 ``*.cmake`` files (under
``<venv>/share/*/cmake/``) whose include directories name the folders of the
machine the wheels were built on, e.g. ``/opt/python/cp311-cp311/include/python3.11``
and ``/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include``.
Building our own messages (rosidl_generator_py) then fails because those
folders do not exist here. This script rewrites them to
``sysconfig.get_paths()['include']`` and ``numpy.get_include()`` of the Python
that runs it (run it with the venv's Python).

Idempotent: files that are already right are left untouched. Reinstalling the
wheels undoes the repair, so run it after every requirements install.
"""

from __future__ import annotations

import argparse
import re
import sys
import importlib.util
import sysconfig
from pathlib import Path

# Header folders of a foreign Python: .../include/python3.X (but not ours).
_PY_INCLUDE = re.compile(r'[^";]*/include/python3\.\d+')
# numpy header folders: .../site-packages/numpy/_core/include or numpy/core/include.
_NP_INCLUDE = re.compile(r'[^";]*/site-packages/numpy/(?:_core|core)/include')


def numpy_include() -> str:
    """numpy.get_include() without importing numpy (which takes ~0.25 s)."""
    spec = importlib.util.find_spec('numpy')
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        for sub in ('_core', 'core'):  # numpy 2.x, numpy 1.x
            if (root / sub / 'include' / 'numpy' / 'ndarrayobject.h').is_file():
                return str(root / sub / 'include')
    import numpy  # unusual layout: ask numpy itself

    return numpy.get_include()


def repair(prefix: Path, dry_run: bool = False) -> list[Path]:
    py_inc = sysconfig.get_paths()['include']
    np_inc = numpy_include()
    changed = []
    share = prefix / 'share'
    if not share.is_dir():
        return changed
    for path in sorted(share.glob('*/cmake/*.cmake')):
        text = path.read_text()
        # Cheap filter first: the regexes are slow on the large files.
        if '/include/python3' not in text and '/numpy/' not in text:
            continue
        new = _NP_INCLUDE.sub(lambda m: np_inc, text)
        new = _PY_INCLUDE.sub(lambda m: py_inc, new)
        if new != text:
            changed.append(path)
            if not dry_run:
                path.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--prefix', type=Path, default=Path(sys.prefix),
                        help='environment whose share/ to repair (default: this Python\'s prefix)')
    parser.add_argument('--dry-run', action='store_true', help='only list the files to change')
    args = parser.parse_args(argv)
    changed = repair(args.prefix, args.dry_run)
    verb = 'would repair' if args.dry_run else 'repaired'
    print(f'repair_ros_cmake: {verb} {len(changed)} file(s) under {args.prefix / "share"}')
    for path in changed:
        print(f'  {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
