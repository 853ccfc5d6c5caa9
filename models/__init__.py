"""Action model: SlowFast + ViT backbone, neck, ACAR head and loss, built from the YAML `model:` section."""
