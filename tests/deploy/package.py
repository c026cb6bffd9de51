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

Compiled bytecode: FC mounts ``/code`` read-only, so Python cannot write ``__pycache__`` there,
and a package without ``.pyc`` files compiles every module it imports from source at every cold
start (importing the ICE SDK client: about 1.2 s of CPU instead of 0.3 s, measured here; the
template's 0.25 vCPU takes four times that in wall-clock time). So the package ships
``__pycache__/*.cpython-310.pyc`` (about 5 MiB more zipped), written by a CPython 3.10 found on
``PATH`` or among pyenv's versions (the magic number is the interpreter's own) with
``python3.10 -m compileall``:

- the vendored tree with ``--invalidation-mode unchecked-hash``: the importer loads the ``.pyc``
  without looking at the source. Timestamps would not do: a zip keeps times at 2-second
  precision, so a timestamp-checked ``.pyc`` may be rejected after extraction. Nobody edits
  ``function/python`` by hand, and each build recreates it and compiles it again.
- our own code (``index.py``, ``ice_upload_sync/``) with ``checked-hash``: the importer hashes
  the source and compiles it again when it changed. These ``.pyc`` files stay in the working
  tree, and an unchecked one would let a developer running python3.10 edit a file and silently
  run the old bytecode. Hashing our dozen small files costs about a millisecond of CPU.

Only ``__pycache__/<module>.cpython-310.pyc`` next to its ``<module>.py`` is shipped; any other
``.pyc`` or ``.pyo`` (a developer's cpython-311 cache, optimized or orphaned ones) is junk. The
cache under ``.cache/deploy`` holds sources only: compiling takes about 2 s. Without a CPython
3.10 the package is built all the same, without bytecode, and a warning says what that costs.

    python tests/deploy/package.py [--function-dir function] [--zip build/ice-upload-sync.zip]

It also writes the zip that ``s deploy`` would upload (the fc3 component zips ``code:`` the same
way) and prints the sizes.
"""
from __future__ import annotations

import argparse
import functools
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
JUNK_DIRS = {".pytest_cache", ".ruff_cache", ".hypothesis", "tests", ".records", ".local-records"}
BYTECODE_SUFFIXES = (".pyc", ".pyo")  # junk, except the target's own cache (shipped_bytecode)
# Measured on this machine (python3.10, 2 cores, the zip extracted read-only): CPU to import the
# ICE SDK client without and with the shipped bytecode; the warning without a CPython 3.10 quotes them.
ICE_IMPORT_CPU_FROM_SOURCE, ICE_IMPORT_CPU_FROM_BYTECODE = "1.2 s", "0.3 s"


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


def cache_tag(python_version: str) -> str:
    """CPython's ``sys.implementation.cache_tag`` for a version: ``3.10`` -> ``cpython-310``."""
    return "cpython-" + python_version.replace(".", "")


def shipped_bytecode(path: Path, python_version: str) -> bool:
    """Whether ``path`` is ``__pycache__/<module>.<tag>.pyc`` for the target and its ``<module>.py`` exists."""
    suffix = f".{cache_tag(python_version)}.pyc"
    if path.parent.name != "__pycache__" or not path.name.endswith(suffix):
        return False
    return (path.parent.parent / (path.name[:-len(suffix)] + ".py")).is_file()


def is_junk(path: Path, root: Path, python_version: Optional[str]) -> bool:
    """Never shipped: caches, tests, local records, and every ``.pyc`` but the target's (none when ``None``)."""
    if any(part in JUNK_DIRS or part.endswith(".egg-info") for part in path.relative_to(root).parts):
        return True  # .egg-info: `pip install -e .` (the command line in .venv) writes it into function/
    if path.name.endswith(BYTECODE_SUFFIXES):
        return python_version is None or not shipped_bytecode(path, python_version)
    return False


def remove_junk(root: Path, python_version: Optional[str] = None) -> None:
    """Delete what ``is_junk``; with no ``python_version``, every compiled file goes too."""
    for path in sorted(root.rglob("*"), reverse=True):  # a folder's contents before the folder
        if path.is_dir() and (path.name in JUNK_DIRS or path.name.endswith(".egg-info")):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and is_junk(path, root, python_version):
            path.unlink()
        elif path.is_dir() and path.name == "__pycache__" and not any(path.iterdir()):
            path.rmdir()


@functools.cache
def find_cpython(version: str) -> Optional[str]:
    """A CPython of exactly this version on this machine (this one, ``PATH``, pyenv's versions), or None."""
    if sys.implementation.name == "cpython" and sys.version_info[:2] == tuple(map(int, version.split("."))):
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]  # a pyenv shim is here too, and fails the probe if not enabled
    candidates += sorted(str(p) for p in pyenv.glob(f"versions/{version}.*/bin/python{version}"))
    probe = "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])"
    for candidate in filter(None, candidates):
        answer = subprocess.run([candidate, "-I", "-c", probe], capture_output=True, text=True)
        if answer.returncode == 0 and answer.stdout.split() == ["cpython", version]:
            return candidate
    return None


def compile_bytecode(python: str, paths: Sequence[Path], invalidation_mode: str) -> None:
    """``python -m compileall`` over ``paths`` (files or folders): ``__pycache__/*.pyc`` for that Python.

    ``-f``: without it compileall keeps a ``.pyc`` whose timestamp matches (one a developer's python3.10
    wrote), in whatever mode it has. ``-I`` keeps ``PYTHONPYCACHEPREFIX`` from sending the files elsewhere.
    """
    if not paths:
        return
    command = [python, "-I", "-m", "compileall", "-q", "-f", "-j", "0", "--invalidation-mode", invalidation_mode,
               *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:  # a file this Python cannot compile would fail to import on FC as well
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def warn_no_bytecode(python_version: str) -> None:
    print(f"WARNING: no CPython {python_version} found on PATH or in pyenv's versions, so the package ships no "
          f"compiled bytecode. FC mounts /code read-only: every cold start will compile the dependencies from "
          f"source (importing the ICE SDK client: about {ICE_IMPORT_CPU_FROM_SOURCE} of CPU instead of "
          f"{ICE_IMPORT_CPU_FROM_BYTECODE}, and the template's 0.25 vCPU takes four times that in wall-clock "
          f"time). Install python{python_version} and run `make package` again.", file=sys.stderr)


def package(function_dir: Path, cache: Path, python_version: str = PYTHON_VERSION) -> Path:
    """Vendor ``function_dir/requirements.txt`` into ``function_dir/python``, clean the folder, compile it."""
    vendored = vendor(function_dir / "requirements.txt", cache, python_version)
    python = find_cpython(python_version)
    destination = function_dir / VENDOR_DIR
    staging = function_dir / f".{VENDOR_DIR}.new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(vendored, staging, ignore=shutil.ignore_patterns(".complete"))
    if python:
        compile_bytecode(python, [staging], "unchecked-hash")
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    remove_junk(function_dir, python_version)
    if python:
        own_code = [path for path in function_dir.iterdir()
                    if path.name != VENDOR_DIR and (path.is_dir() or path.suffix == ".py")]
        compile_bytecode(python, own_code, "checked-hash")
    else:
        warn_no_bytecode(python_version)
    return destination


def package_files(function_dir: Path, python_version: str = PYTHON_VERSION) -> List[Path]:
    return [path.relative_to(function_dir) for path in sorted(function_dir.rglob("*"))
            if path.is_file() and not is_junk(path, function_dir, python_version)]


def write_zip(function_dir: Path, zip_path: Path, python_version: str = PYTHON_VERSION) -> int:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in package_files(function_dir, python_version):
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
    zipped = write_zip(args.function_dir, args.zip, args.python_version)
    files = package_files(args.function_dir, args.python_version)
    compiled = sum(path.suffix == ".pyc" for path in files)
    mib = 1024 * 1024
    print(f"vendored {vendored}: {tree_size(vendored) / mib:.1f} MiB; "
          f"package {args.function_dir}: {tree_size(args.function_dir) / mib:.1f} MiB, "
          f"{len(files)} files ({compiled} compiled for {cache_tag(args.python_version)}); "
          f"zip {args.zip}: {zipped / mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
