"""Test-session setup: keep ultralytics offline and its settings inside the repository.

These variables must be set before anything imports ultralytics (ENVIRONMENT.md pitfalls 5-7).
"""
from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
os.environ.setdefault("YOLO_CONFIG_DIR", str(_ROOT / ".ultralytics"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")
