"""The deployable package: built the way `make package` builds it, then inspected and imported.

The build runs pip against PyPI the first time and is cached in ``.cache/deploy/`` (by the hash
of ``function/requirements.txt``), so later runs take a few seconds. It builds from a copy of
``function/`` so the suite never touches the working tree's ``function/python``.

Interpreters run on a package get ``-B`` (not ``PYTHONDONTWRITEBYTECODE``, which ``-I`` ignores),
so no test writes a ``.pyc`` into the package another test inspects.
"""
from __future__ import annotations

import json
import py_compile
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy import package as pkg

FUNCTION = pkg.REPO / "function"
MIB = 1024 * 1024
HOST_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
RUNTIME_PYTHON = pkg.find_cpython(pkg.PYTHON_VERSION)
needs_runtime_python = pytest.mark.skipif(RUNTIME_PYTHON is None,
                                          reason=f"no CPython {pkg.PYTHON_VERSION} here to compile or run with")
# The flags word of a .pyc header (PEP 552): bit 0 hash-based, bit 1 check the source.
UNCHECKED_HASH, CHECKED_HASH = 0b01, 0b11


def build(tmp_path_factory, python_version: str) -> Path:
    function_dir = tmp_path_factory.mktemp(f"package-{python_version}") / "function"
    shutil.copytree(FUNCTION, function_dir, ignore=shutil.ignore_patterns("python", ".python.new"))
    if python_version != HOST_VERSION:  # what running the suite leaves behind; not for the package's Python
        py_compile.compile(str(function_dir / "index.py"), doraise=True,
                           cfile=str(function_dir / "__pycache__" / f"index.{sys.implementation.cache_tag}.pyc"))
    pkg.package(function_dir, pkg.REPO / ".cache" / "deploy", python_version)
    return function_dir


def pyc_flags(pyc: Path) -> int:
    return struct.unpack("<I", pyc.read_bytes()[4:8])[0]


def cached_pyc(source: Path, python_version: str = pkg.PYTHON_VERSION) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{pkg.cache_tag(python_version)}.pyc"


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    """The artifact for FC: python3.10, manylinux2014_x86_64."""
    return build(tmp_path_factory, pkg.PYTHON_VERSION)


@pytest.fixture(scope="module")
def importable_package_dir(tmp_path_factory, package_dir) -> Path:
    """A package this interpreter can import: the artifact itself on 3.10, else the same recipe for this Python.

    The artifact's native modules (cffi, aiohttp, ...) are built for CPython 3.10 only.
    """
    if HOST_VERSION == pkg.PYTHON_VERSION:
        return package_dir
    return build(tmp_path_factory, HOST_VERSION)


def test_the_package_carries_the_code_and_the_dependencies(package_dir):
    vendored = package_dir / pkg.VENDOR_DIR
    assert (package_dir / "index.py").is_file()
    assert (package_dir / "ice_upload_sync" / "sync.py").is_file()
    for module in ("alibabacloud_ice20201109", "alibabacloud_tea_openapi", "Tea", "oss2", "crcmod"):
        assert (vendored / module).is_dir(), module
    assert (vendored / "oss2-2.19.1.dist-info").is_dir()  # V4 signing; the runtime's 2.16.0 signs V1 only
    assert not list(vendored.glob("tablestore*")), "tablestore comes with the python3.10 runtime"


def test_the_package_carries_no_tests_caches_or_scripts(package_dir):
    junk = [path.relative_to(package_dir) for path in package_dir.rglob("*")
            if path.name in pkg.JUNK_DIRS or (path.suffix in (".pyc", ".pyo")
                                              and not pkg.shipped_bytecode(path, pkg.PYTHON_VERSION))]
    assert junk == []
    assert not (package_dir / pkg.VENDOR_DIR / "bin").exists()
    assert not list(package_dir.glob("**/emulators"))


def test_native_modules_are_built_for_fc(package_dir):
    """Every extension is for CPython 3.10 (or the stable ABI) on manylinux x86_64, never this machine's."""
    extensions = list((package_dir / pkg.VENDOR_DIR).rglob("*.so"))
    assert extensions  # cryptography, cffi, aiohttp, ...
    for extension in extensions:
        tag = re.search(r"\.(cpython-\d+[^.]*|abi3)\.so$", extension.name)
        if tag and tag.group(1).startswith("cpython-"):
            assert tag.group(1) == "cpython-310-x86_64-linux-gnu", extension.name
    wheel_files = list((package_dir / pkg.VENDOR_DIR).glob("*.dist-info/WHEEL"))
    assert len(wheel_files) > 10
    for wheel in wheel_files:
        tags = [line.split(": ", 1)[1] for line in wheel.read_text().splitlines() if line.startswith("Tag: ")]
        assert all(t.endswith("-any") or ("manylinux" in t and "x86_64" in t) for t in tags), (wheel.parent.name, tags)


@needs_runtime_python
def test_every_module_ships_bytecode_for_the_runtime_python(package_dir, tmp_path):
    """Vendored code unchecked (loaded without reading the source), ours checked (edits are never shadowed)."""
    vendored = package_dir / pkg.VENDOR_DIR
    sources = sorted(package_dir.rglob("*.py"))
    assert any(vendored in source.parents for source in sources)
    for source in sources:
        pyc = cached_pyc(source)
        assert pyc.is_file(), source
        expected = UNCHECKED_HASH if vendored in source.parents else CHECKED_HASH
        assert pyc_flags(pyc) == expected, pyc
    compiled = sorted(package_dir.rglob("*.pyc"))
    assert compiled == sorted(cached_pyc(source) for source in sources)  # no other Python's, none orphaned

    pkg.write_zip(package_dir, tmp_path / "package.zip")
    with zipfile.ZipFile(tmp_path / "package.zip") as archive:
        zipped = sorted(name for name in archive.namelist() if name.endswith((".pyc", ".pyo")))
    assert zipped == sorted(pyc.relative_to(package_dir).as_posix() for pyc in compiled)


@needs_runtime_python
def test_the_runtime_python_imports_the_zip_read_only_without_compiling(package_dir, tmp_path):
    """As on FC: the zip extracted where nothing can be written; no module of ours or the SDKs' is compiled."""
    pkg.write_zip(package_dir, tmp_path / "package.zip")
    code_dir = tmp_path / "code"
    with zipfile.ZipFile(tmp_path / "package.zip") as archive:
        archive.extractall(code_dir)
    for path in [code_dir, *code_dir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)  # root ignores this: -B and the file list below enforce it
    files_before = sorted(code_dir.rglob("*"))
    code = f"""
import importlib._bootstrap_external as bootstrap, json, sys, time
compiled = []
source_to_code = bootstrap.SourceLoader.source_to_code
def recording_source_to_code(self, data, path, **options):
    compiled.append(path)
    return source_to_code(self, data, path, **options)
bootstrap.SourceLoader.source_to_code = recording_source_to_code
sys.path[:0] = [{str(code_dir)!r}, {str(code_dir / pkg.VENDOR_DIR)!r}]
started = time.process_time()
import alibabacloud_ice20201109.client, oss2, index, ice_upload_sync.sync, ice_upload_sync.stores.file
cpu = time.process_time() - started
client = sys.modules["alibabacloud_ice20201109.client"]
print(json.dumps({{"compiled": compiled, "cached": client.__cached__, "cpu": cpu}}))
"""
    try:
        result = subprocess.run([RUNTIME_PYTHON, "-I", "-S", "-B", "-c", code], cwd=code_dir, timeout=120,
                                capture_output=True, text=True)
        files_after = sorted(code_dir.rglob("*"))
    finally:
        for path in [code_dir, *code_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # so pytest can remove tmp_path
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"import CPU from bytecode: {answer['cpu']:.3f} s")
    assert [path for path in answer["compiled"] if path.startswith(str(code_dir))] == []
    assert answer["cached"] == str(cached_pyc(code_dir / pkg.VENDOR_DIR / "alibabacloud_ice20201109" / "client.py"))
    assert files_after == files_before


def test_without_the_runtime_python_the_package_has_no_bytecode_and_says_so(tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setattr(pkg, "find_cpython", lambda version: None)
    function_dir = build(tmp_path_factory, pkg.PYTHON_VERSION)
    assert list((function_dir / pkg.VENDOR_DIR).rglob("*.pyc")) == []
    assert (function_dir / pkg.VENDOR_DIR / "alibabacloud_ice20201109" / "client.py").is_file()
    warning = capsys.readouterr().err
    assert f"no CPython {pkg.PYTHON_VERSION} found" in warning
    assert "compile the dependencies from source" in warning and pkg.ICE_IMPORT_CPU_FROM_SOURCE in warning


def test_only_the_target_pythons_bytecode_next_to_its_source_ships(tmp_path):
    def touch(relative: str) -> None:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")

    shipped = ["index.py", "__pycache__/index.cpython-310.pyc",
               "python/mod.py", "python/__pycache__/mod.cpython-310.pyc"]
    junk = ["__pycache__/index.cpython-311.pyc",  # a developer's, for another Python
            "__pycache__/index.cpython-310.opt-1.pyc", "index.pyc", "index.pyo",
            "__pycache__/removed.cpython-310.pyc",  # its source is gone
            "other/__pycache__/mod.cpython-312.pyc", "tests/test_index.py"]
    for relative in shipped + junk:
        touch(relative)
    assert [path.as_posix() for path in pkg.package_files(tmp_path, "3.10")] == sorted(shipped)

    pkg.remove_junk(tmp_path, "3.10")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(shipped)
    assert not (tmp_path / "other").joinpath("__pycache__").exists()

    pkg.remove_junk(tmp_path)  # the vendor cache: sources only
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "index.py", "python/mod.py"]


def test_compiling_rewrites_a_timestamp_pyc_and_refuses_what_does_not_compile(tmp_path):
    """compileall alone keeps a .pyc whose timestamp matches (a developer's); the package needs the hash mode."""
    module = tmp_path / "module.py"
    module.write_text("VALUE = 1\n")
    pyc = cached_pyc(module, HOST_VERSION)
    py_compile.compile(str(module), cfile=str(pyc), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    pkg.compile_bytecode(sys.executable, [tmp_path], "checked-hash")
    assert pyc_flags(pyc) == CHECKED_HASH

    (tmp_path / "broken.py").write_text("def broken(:\n")
    with pytest.raises(RuntimeError, match="broken.py"):
        pkg.compile_bytecode(sys.executable, [tmp_path], "checked-hash")


def test_the_package_is_small(package_dir, tmp_path):
    zipped = pkg.write_zip(package_dir, tmp_path / "package.zip")
    unpacked = pkg.tree_size(package_dir)
    print(f"package: {unpacked / MIB:.1f} MiB unpacked, {zipped / MIB:.1f} MiB zipped")
    # about 59 MiB / 19 MiB today, 12 MiB / 5 MiB of it bytecode; tablestore 6.x alone would add
    # about 111 MiB (numpy, aiohttp)
    assert unpacked < 80 * MIB and zipped < 30 * MIB


def test_index_imports_from_the_package_alone(package_dir):
    """Pure code on any Python: a clean interpreter (no site-packages), only the package on its path."""
    code = (f"import sys; sys.path[:0] = [{str(package_dir)!r}, {str(package_dir / 'python')!r}]\n"
            "import index\n"
            "assert callable(index.handler) and callable(index.initialize)\n"
            "assert index.__file__.startswith(sys.path[0])\n")
    subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code], check=True, timeout=60)


def test_every_dependency_the_target_python_needs_is_vendored(package_dir):
    """pip judges markers by the Python it runs on; the package is for 3.10 wherever it is built."""
    vendored = package_dir / pkg.VENDOR_DIR
    assert pkg.missing_for_target(vendored, pkg.requirement_lines(FUNCTION / "requirements.txt"),
                                  pkg.PYTHON_VERSION) == []
    assert (vendored / "async_timeout").is_dir()  # aiohttp needs it below Python 3.11 (the ICE SDK imports aiohttp)


def test_missing_requirements_follow_the_target_markers_and_extras(tmp_path):
    def dist(name, *requires):
        folder = tmp_path / f"{name}-1.0.dist-info"
        folder.mkdir()
        lines = [f"Name: {name}", "Version: 1.0", *(f"Requires-Dist: {r}" for r in requires), "", "body"]
        (folder / "METADATA").write_text("\n".join(lines))

    dist("top", "old-only; python_version < '3.11'", "new-only; python_version >= '3.11'", "withextra[fast]>=1",
         "windows-only; sys_platform == 'win32'", "Present")
    dist("withextra", "speedup; extra == 'fast'", "unused; extra == 'slow'")
    dist("present")
    assert pkg.missing_for_target(tmp_path, ["top==1.0"], "3.10") == ["old-only", "speedup"]
    assert pkg.missing_for_target(tmp_path, ["top==1.0"], "3.12") == ["new-only", "speedup"]


@needs_runtime_python
def test_the_artifact_itself_initializes_on_the_runtime_python(package_dir, tmp_path):
    """The package FC gets, on the Python FC runs it with, when this machine has that Python."""
    initialize_from(package_dir, RUNTIME_PYTHON, tmp_path)


def test_the_sdks_import_and_initialize_runs_from_the_package_alone(importable_package_dir, tmp_path):
    initialize_from(importable_package_dir, sys.executable, tmp_path)


def initialize_from(package_dir: Path, python: str, tmp_path: Path) -> None:
    code = f"""
import json, os, sys
sys.path[:0] = [{str(package_dir)!r}, {str(package_dir / 'python')!r}]
os.environ.update(ICE_REGION="cn-shanghai", RECORD_STORE="file://{tmp_path / 'records'}",
                  ALIBABA_CLOUD_ACCESS_KEY_ID="id", ALIBABA_CLOUD_ACCESS_KEY_SECRET="secret")
from types import SimpleNamespace
import index
index.initialize(SimpleNamespace(credentials=None, request_id="package-test"))
import alibabacloud_ice20201109.client, alibabacloud_eventbridge20200401.client, oss2, Tea
oss2.Bucket(oss2.AuthV4("id", "secret"), "https://oss-cn-shanghai.aliyuncs.com", "bucket", region="cn-shanghai")
from ice_upload_sync.config import Settings
from ice_upload_sync.eventbridge import EventBridgeBus
bus = EventBridgeBus(Settings(notify_eventbridge_bus="bus"))
bus.bind(SimpleNamespace(access_key_id="id", access_key_secret="secret", security_token=None))
bus.prepare()  # the vendored SDK builds its client
files = [m.__file__ for m in (alibabacloud_ice20201109.client, alibabacloud_eventbridge20200401.client, oss2, Tea)]
print(json.dumps({{"oss2": oss2.__version__, "files": files}}))
"""
    result = subprocess.run([python, "-I", "-S", "-B", "-c", code], timeout=120, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["oss2"] == "2.19.1"
    assert all(path.startswith(str(package_dir / "python")) for path in answer["files"]), answer
