#!/usr/bin/env python3
"""Build (once) the wheelhouse the nodes install Cirrus from; runs on the deploy host.

Two parts, cached separately under ``--cache``:

``deps-<key>.tar``
    Wheels of the project's runtime dependencies (``[project] dependencies`` of pyproject.toml).
    The key hashes pyproject.toml and the Python version and platform of the interpreter running
    this script, so it is rebuilt only when the dependencies (or the target Python) change. An
    uncompressed tar with sorted members, fixed times and owners: copying it is one file, and the
    same inputs give the same bytes.
``project-<key>/cirrus-<version>-py3-none-any.whl``
    The project's own wheel. The key hashes the sources that go into it (``--hash-source``), so
    editing the code rebuilds it and nothing else does. It is built from a copy of the sources,
    never in the working tree.

Prints one JSON object: ``changed`` (something was built), the paths, keys and the SHA-256 of the
project wheel (what the nodes compare to decide whether to reinstall and restart). Exits 1 with a
message on stderr when pip fails.

    build_wheelhouse.py --project DIR --cache DIR [--hash-source P ...] [--build-source P ...]
                        [--keep N] [--pip-arg=ARG ...] [--extra=NAME ...]

``--extra`` adds an optional-dependencies group of pyproject.toml (``libvirt`` for compute hosts;
building it needs ``libvirt-dev`` and ``pkg-config`` on the deploy host) to the dependency wheels.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
from pathlib import Path

SKIP_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def fail(message: str) -> None:
    print(f"build_wheelhouse: {message}", file=sys.stderr)
    raise SystemExit(1)


def iter_files(root: Path, path: Path) -> list[Path]:
    """Every file under ``path`` (or ``path`` itself), sorted, without caches or hidden files."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        fail(f"{path}: no such source file or directory in {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or Path(name).suffix in SKIP_SUFFIXES:
                continue
            found.append(Path(dirpath) / name)
    return sorted(found)


def sources_hash(root: Path, sources: list[str]) -> str:
    digest = hashlib.sha256()
    for source in sources:
        for file in iter_files(root, root / source):
            digest.update(str(file.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip(args: list[str], what: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
        fail(
            f"pip could not build {what} (exit {proc.returncode}):\n  "
            + "\n  ".join(output)
            + "\nFix: make sure this machine reaches a Python package index (`pip config list`"
            " shows which), or set common_wheelhouse_pip_args (e.g. ['--index-url', URL])."
        )


def deterministic_tar(source_dir: Path, target: Path) -> None:
    """Write every file of ``source_dir`` into an uncompressed tar with fixed metadata."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
        for file in sorted(source_dir.iterdir()):
            info = tarfile.TarInfo(file.name)
            info.size = file.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with file.open("rb") as handle:
                archive.addfile(info, io.BufferedReader(handle))  # type: ignore[arg-type]
    os.replace(tmp, target)


def prune(cache: Path, prefix: str, keep_name: str, keep: int) -> None:
    """Keep the ``keep`` most recent entries named ``prefix*`` (always keeping ``keep_name``)."""
    entries = sorted(
        (p for p in cache.glob(prefix + "*") if p.name != keep_name and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[max(keep - 1, 0):]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def build_deps(
    project: Path, cache: Path, pip_args: list[str], keep: int, extras: list[str]
) -> tuple[Path, bool]:
    pyproject = project / "pyproject.toml"
    meta = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    dependencies = list(meta.get("project", {}).get("dependencies", []))
    optional = meta.get("project", {}).get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            fail(
                f"{pyproject}: no optional dependencies named {extra!r} "
                "(common_wheelhouse_extras)"
            )
        dependencies += optional[extra]
    target = f"{sys.version_info.major}.{sys.version_info.minor}/{sysconfig.get_platform()}"
    material = pyproject.read_bytes() + target.encode() + ",".join(sorted(extras)).encode()
    key = hashlib.sha256(material).hexdigest()[:16]
    archive = cache / f"deps-{key}.tar"
    if archive.exists():
        return archive, False
    with tempfile.TemporaryDirectory(prefix="cirrus-deps-") as tmp:
        wheels = Path(tmp) / "wheels"
        wheels.mkdir()
        if dependencies:
            pip(["wheel", "--quiet", "--wheel-dir", str(wheels), *pip_args, *dependencies],
                "the dependencies")
        deterministic_tar(wheels, archive)
    prune(cache, "deps-", archive.name, keep)
    return archive, True


def build_project(
    project: Path, cache: Path, hash_sources: list[str], build_sources: list[str],
    pip_args: list[str], keep: int,
) -> tuple[Path, str, bool]:
    key = sources_hash(project, hash_sources)[:16]
    target_dir = cache / f"project-{key}"
    existing = sorted(target_dir.glob("*.whl")) if target_dir.is_dir() else []
    if existing:
        return existing[0], key, False
    with tempfile.TemporaryDirectory(prefix="cirrus-project-") as tmp:
        src = Path(tmp) / "src"
        out = Path(tmp) / "out"
        for source in dict.fromkeys(hash_sources + build_sources):
            origin = project / source
            if origin.is_dir():
                shutil.copytree(origin, src / source,
                                ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.pyc", "*.egg-info"))
            elif origin.is_file():
                (src / source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, src / source)
            else:
                fail(f"{origin}: no such source file or directory")
        pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), *pip_args, str(src)],
            "the Cirrus wheel")
        built = sorted(out.glob("*.whl"))
        if len(built) != 1:
            fail(f"expected one wheel from {project}, pip built {[p.name for p in built]}")
        staging = cache / f".project-{key}.tmp{os.getpid()}"
        staging.mkdir()
        shutil.move(str(built[0]), staging / built[0].name)
        try:
            os.rename(staging, target_dir)
        except OSError:  # another run finished first: use its wheel
            shutil.rmtree(staging, ignore_errors=True)
    prune(cache, "project-", target_dir.name, keep)
    return sorted(target_dir.glob("*.whl"))[0], key, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--hash-source", action="append", default=[])
    parser.add_argument("--build-source", action="append", default=[])
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--pip-arg", action="append", default=[])
    parser.add_argument("--extra", action="append", default=[],
                        help="optional dependencies to include (pyproject's extras)")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    if not (project / "pyproject.toml").is_file():
        fail(f"{project}: no pyproject.toml; set common_wheelhouse_project_dir to Cirrus's tree")
    cache = args.cache.expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    hash_sources = args.hash_source or ["pyproject.toml"]

    deps, deps_built = build_deps(project, cache, args.pip_arg, args.keep, args.extra)
    wheel, project_key, project_built = build_project(
        project, cache, hash_sources, args.build_source, args.pip_arg, args.keep
    )
    print(json.dumps({
        "changed": deps_built or project_built,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": sysconfig.get_platform(),
        "deps_archive": str(deps),
        "deps_key": deps.stem.removeprefix("deps-"),
        "deps_built": deps_built,
        "project_key": project_key,
        "project_wheel": str(wheel),
        "project_wheel_name": wheel.name,
        "project_sha256": file_sha256(wheel),
        "project_built": project_built,
    }, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
