"""The one YAML reader of configs (``config.yaml_loader``): numbers, line numbers in errors, no torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_config, parse_yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "value"), [
    ("1e-4", 0.0001), ("1.0e-4", 0.0001), (".5", 0.5), ("-3e2", -300.0), ("1E3", 1000.0), ("-.5", -0.5),
    ("1.0e4", 10000.0), ("2", 2), ("0.008", 0.008),
])
def test_yaml_numbers_in_exponent_notation_are_floats(text: str, value: object) -> None:
    # PyYAML's YAML 1.1 rule alone reads 1e-4, -3e2, 1.0e4 and -.5 as strings.
    parsed = parse_yaml(f"lr: {text}")["lr"]
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["1e4x", "e5", "1e", "1.2.3", "0.5e-"])
def test_text_that_only_looks_numeric_stays_a_string(text: str) -> None:
    assert parse_yaml(f"name: {text}")["name"] == text


def test_loading_a_config_imports_no_torch() -> None:
    code = ("import sys; from config import load_config; "
            f"cfg = load_config({str(ROOT / 'configs' / 'tiny_cpu_synthetic.yaml')!r}); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm')); "
            "print(cfg.model.backbone.arch, heavy)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1)[1].strip() == "[]", done.stdout


def test_yaml_problems_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("evaluate: False\nmodel: [1, 2\nval: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_config(path)
    path.write_text("print_freq: 1\nprint_freq: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml: line 2: invalid YAML: duplicate key 'print_freq'"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
