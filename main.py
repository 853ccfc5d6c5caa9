"""Train or evaluate the action model from a YAML config: ``python main.py --config X.yaml [...]``."""
from __future__ import annotations

import sys

from engine.launch import main

if __name__ == "__main__":
    sys.exit(main())
