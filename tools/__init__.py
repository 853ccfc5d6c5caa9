"""Data-preparation and pipeline tools: frame extraction, csv/pkl conversion, data check, the demo."""
