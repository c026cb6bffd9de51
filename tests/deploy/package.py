"""Build the deployable code package: ``function/`` plus its dependencies vendored in ``function/python``.

``make package`` runs this, and so does ``template.yml``'s ``pre-deploy`` action. No Docker:
``pip install --target`` with ``--platform manylinux2014_x86_64 --only-binary=:all:
--python-version 3.10`` picks the wheels FC's python3.10 runtime (Linux x86_64) can load, from
any machine. Three dependencies publish only source distributions (``alibabacloud-tea``,
``oss2``, ``crcmod``), which ``--only-binary`` refuses; they are pure Python, so their wheels
are built here first (``pip wheel --no-deps``, with the C compiler switched off so ``crcmod``
falls back to its pure-Python code) and offered through ``--find-links``. Which packages need
that is found, not listed: a dry run on this machine reports every distribution it would
install and where from; those that come as an sdist get a wheel built.

pip evaluates environment markers for the Python it runs on, not for ``--python-version``: run
on 3.11, it leaves out what only 3.10 needs (aiohttp's ``async-timeout; python_version <
"3.11"``, without which the ICE SDK does not import on FC). So after pip, the vendored tree's
own metadata is read with the target's markers (CPython 3.10 on Linux x86_64), and whatever is
missing is added, until nothing is.

The vendored tree is cached under ``.cache/deploy/`` by a hash of ``function/requirements.txt``,
the target Python and the recipe, so rebuilding the package is a copy. ``function/python`` is git-ignored;
FC finds it through ``PYTHONPATH=/code/python`` (FC puts the code package in ``/code``).

    python tests/deploy/package.py [--function-dir function] [--zip build/ice-upload-sync.zip]

It also writes the zip that ``s deploy`` would upload (the fc3 component zips ``code:`` the same
way) and prints the sizes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.10"  # template.yml's runtime: python3.10
VENDOR_DIR = "python"  # inside the code package; PYTHONPATH=/code/python in template.yml
# Never shipped, wherever they turn up in the package.
JUNK_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "tests", ".records", ".local-records"}
JUNK_SUFFIXES = (".pyc", ".pyo")


RECIPE = "2"  # bump when the way the tree is built changes: old caches are then not reused

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip carries its own copy wherever pip is
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]


def target_environment(python_version: str) -> Dict[str, str]:
    """Environment markers as FC's runtime evaluates them (CPython on Linux x86_64)."""
    full = f"{python_version}.0"
    return {"implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
            "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
            "platform_system": "Linux", "platform_version": "", "python_full_version": full,
            "python_version": python_version, "sys_platform": "linux", "extra": ""}


def requirement_lines(requirements: Path) -> List[str]:
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def installed_requirements(target: Path) -> Dict[str, List[str]]:
    """Each distribution in ``target`` (canonical name) -> its ``Requires-Dist`` lines."""
    found = {}
    for metadata in target.glob("*.dist-info/METADATA"):
        name, requires = "", []
        for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                break  # the headers end at the first blank line
            if line.startswith("Name: "):
                name = line[6:].strip()
            elif line.startswith("Requires-Dist: "):
                requires.append(line[15:].strip())
        if name:
            found[canonicalize_name(name)] = requires
    return found


def missing_for_target(target: Path, top_level: List[str], python_version: str) -> List[str]:
    """Requirements that apply on the target Python (markers, extras) but have no distribution in ``target``."""
    environment = target_environment(python_version)
    installed = installed_requirements(target)
    missing: Dict[str, str] = {}
    visited = set()
    queue = [(Requirement(line), "") for line in top_level]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in installed:
            missing.setdefault(name, f"{requirement.name}{requirement.specifier}")
            continue
        for wanted in {""} | set(requirement.extras):
            if (name, wanted) not in visited:
                visited.add((name, wanted))
                queue.extend((Requirement(line), wanted) for line in installed[name])
    return sorted(missing.values())


def _pip(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env)


def requirements_key(requirements: Path, python_version: str) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"{python_version}|{PLATFORM}|{RECIPE}".encode())
    return digest.hexdigest()[:16]


def sdist_only(requirements: Path) -> List[str]:
    """``name==version`` of every distribution that pip would install from a source archive."""
    report_path = Path(tempfile.mkdtemp(prefix="pip-report-")) / "report.json"
    try:
        _pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report_path),
             "-r", str(requirements))
        report = json.loads(report_path.read_text())
    finally:
        shutil.rmtree(report_path.parent, ignore_errors=True)
    pins = []
    for item in report["install"]:
        url = item["download_info"]["url"]
        if not url.endswith(".whl"):
            pins.append(f"{item['metadata']['name']}=={item['metadata']['version']}")
    return sorted(pins)


def wheelhouse(requirements: Path, cache: Path) -> Path:
    """Pure-Python wheels of the sdist-only dependencies (any target Python can use them), built once."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    done = cache / f"wheels-{digest}"
    if (done / ".complete").exists():
        return done
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"wheels-{digest}-", dir=cache))
    try:
        pins = sdist_only(requirements)
        if pins:
            # CC=false: crcmod's setup.py falls back to pure Python when its C extension does not
            # build, which gives a py3-none-any wheel instead of one for this machine only.
            env = dict(os.environ, CC="false", LDSHARED="false")
            _pip("wheel", "--no-deps", "--no-cache-dir", "-w", str(work), *pins, env=env)
        for wheel in work.glob("*.whl"):
            if not wheel.name.endswith("-none-any.whl"):
                raise RuntimeError(f"{wheel.name} is not a pure-Python wheel; it would not load on FC")
        (work / ".complete").write_text("\n".join(pins) + "\n")
        _publish(work, done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done


def _publish(work: Path, done: Path) -> None:
    try:
        work.rename(done)
    except OSError:  # built concurrently by someone else: theirs is as good
        if not (done / ".complete").exists():
            raise


def vendor(requirements: Path, cache: Path, python_version: str = PYTHON_VERSION) -> Path:
    """The vendored dependencies for ``requirements`` (built once, then served from ``cache``)."""
    key = requirements_key(requirements, python_version)
    done = cache / f"vendor-{key}"
    if (done / ".complete").exists():
        return done
    wheels = wheelhouse(requirements, cache)
    work = Path(tempfile.mkdtemp(prefix=f"vendor-{key}-", dir=cache))
    try:
        target_options = ("--quiet", "--no-compile", "--target", str(work), "--platform", PLATFORM,
                          "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
                          "--find-links", str(wheels))
        _pip("install", *target_options, "-r", str(requirements))
        for _ in range(10):  # what the target's markers want and pip, judging by this Python, left out
            missing = missing_for_target(work, requirement_lines(requirements), python_version)
            if not missing:
                break
            _pip("install", *target_options, "--no-deps", *missing)
        else:
            raise RuntimeError(f"the dependencies for Python {python_version} do not close: {missing}")
        shutil.rmtree(work / "bin", ignore_errors=True)  # console scripts pointing at this machine's Python
        remove_junk(work)
        (work / ".complete").write_text(requirements.read_text())
        _publish(work, done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done


def remove_junk(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_dir() and path.name in JUNK_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.name.endswith(JUNK_SUFFIXES):
            path.unlink()


def package(function_dir: Path, cache: Path, python_version: str = PYTHON_VERSION) -> Path:
    """Vendor ``function_dir/requirements.txt`` into ``function_dir/python`` and clean the folder."""
    vendored = vendor(function_dir / "requirements.txt", cache, python_version)
    destination = function_dir / VENDOR_DIR
    staging = function_dir / f".{VENDOR_DIR}.new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(vendored, staging, ignore=shutil.ignore_patterns(".complete"))
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    remove_junk(function_dir)
    return destination


def package_files(function_dir: Path) -> List[Path]:
    files = []
    for path in sorted(function_dir.rglob("*")):
        relative = path.relative_to(function_dir)
        if any(part in JUNK_DIRS for part in relative.parts) or path.name.endswith(JUNK_SUFFIXES):
            continue
        if path.is_file():
            files.append(relative)
    return files


def write_zip(function_dir: Path, zip_path: Path) -> int:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in package_files(function_dir):
            archive.write(function_dir / relative, relative.as_posix())
    return zip_path.stat().st_size


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--function-dir", type=Path, default=REPO / "function")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "deploy")
    parser.add_argument("--zip", type=Path, default=REPO / "build" / "ice-upload-sync.zip")
    parser.add_argument("--python-version", default=PYTHON_VERSION)
    args = parser.parse_args(argv)
    vendored = package(args.function_dir, args.cache, args.python_version)
    zipped = write_zip(args.function_dir, args.zip)
    mib = 1024 * 1024
    print(f"vendored {vendored}: {tree_size(vendored) / mib:.1f} MiB; "
          f"package {args.function_dir}: {tree_size(args.function_dir) / mib:.1f} MiB, "
          f"{len(package_files(args.function_dir))} files; zip {args.zip}: {zipped / mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
