"""Data types that datasets/ make and models/ read: batches, cached ViT statistics (no other project import)."""
