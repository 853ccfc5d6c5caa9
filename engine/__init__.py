"""Run engine: config loading, distributed setup, schedules, checkpoints, train/eval loops."""
