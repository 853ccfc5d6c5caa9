"""Data types shared by packages that may not import each other: the cached ViT statistics (no other project import)."""
