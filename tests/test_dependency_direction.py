"""The one-way dependency rule of the README (Layout), checked on the source (no imports executed).

common -> formats, config -> evaluation, structures -> datasets, models -> engine -> detect, tools, CLIs.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "formats", "config", "evaluation", "structures", "datasets", "models", "engine", "detect", "tools",
            "benchmarks")
# Project packages each area may import (besides itself).
ALLOWED = {
    # The command-line convention, the input-error type, atomic writes: the standard library only.
    "common": set(),
    "formats": {"common"},
    "config": {"common", "formats"},
    "evaluation": {"common", "formats", "config"},
    # Types datasets/ and models/ both use (batches, cached ViT statistics): neither may import the other.
    "structures": {"common"},
    "datasets": {"common", "formats", "config", "evaluation", "structures"},
    "models": {"common", "formats", "config", "structures"},
    "engine": {"common", "formats", "config", "evaluation", "structures", "datasets", "models"},
    "detect": {"common", "formats", "config", "evaluation", "structures", "datasets", "models", "engine"},
    "tools": {"common", "formats", "config", "evaluation", "structures", "datasets", "models", "engine", "detect"},
    "benchmarks": {"common", "formats", "config", "evaluation", "structures", "datasets", "models", "engine",
                   "detect", "tools"},
}
NO_TORCH = {"common", "formats", "config", "evaluation"}
# Only the detector stage (and the video demo's detection and tracking module) may import ultralytics.
ULTRALYTICS_OK = ("detect/", "tools/video_detect.py", "benchmarks/detect_infer.py")


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _sources() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("package,path", _sources(), ids=lambda value: str(value).replace(str(ROOT) + "/", ""))
def test_imports_follow_the_dependency_direction(package: str, path: Path) -> None:
    roots = _imported_roots(path)
    forbidden = (roots & set(PACKAGES)) - ALLOWED[package] - {package}
    assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}, against the dependency direction in the README"
    if package in NO_TORCH:
        assert not roots & {"torch", "torchvision", "timm"}, f"{path.relative_to(ROOT)} must not import torch"
    rel = path.relative_to(ROOT).as_posix()
    if "ultralytics" in roots:
        assert rel.startswith(ULTRALYTICS_OK), f"{rel} imports ultralytics; only detect/ may"


def test_every_area_has_sources() -> None:
    for package in ("common", "formats", "config", "evaluation", "structures", "models", "engine"):
        assert list((ROOT / package).rglob("*.py")), f"{package}/ has no Python source"
