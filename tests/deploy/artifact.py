"""The artifact that ships, the way FC gets it: ``make package`` into a copy of ``function/``, zipped, extracted.

Used by the runtime tests (tests/deploy/test_artifact_runtime.py) and the cold-start benchmark.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from tests.deploy import package as pkg


def build_zip(work: Path) -> Path:
    """``make package`` into a copy of function/ under ``work``, zipped as ``s deploy`` would upload it."""
    function_dir = work / "function"
    shutil.copytree(pkg.REPO / "function", function_dir,
                    ignore=shutil.ignore_patterns("python", ".python.new", "__pycache__"))
    pkg.package(function_dir, pkg.REPO / ".cache" / "deploy")
    zip_path = work / "package.zip"
    pkg.write_zip(function_dir, zip_path)
    return zip_path


def extract(zip_path: Path, destination: Path, *, bytecode: bool = True) -> Path:
    """The zip as FC mounts it at /code: extracted, then read-only.

    Root ignores permission bits, so whatever runs from it must also run with ``-B``
    (``-I`` ignores ``PYTHONDONTWRITEBYTECODE``). ``bytecode=False`` drops every ``.pyc``:
    the package as it was before it shipped compiled bytecode.
    """
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(destination)
    if not bytecode:
        for folder in list(destination.rglob("__pycache__")):
            shutil.rmtree(folder)
    for path in destination.rglob("*"):
        path.chmod(path.stat().st_mode & ~0o222)
    return destination


def make_writable(root: Path) -> None:
    """So the folder can be removed again."""
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
