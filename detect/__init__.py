"""Stage 1: the YOLOv8 person detector (dataset conversion, training, proposals, quality, offline setup)."""
