"""The bottom layer every package may import: the command-line convention, the input-error type and its
field parsers, and atomic file writes. Standard library only."""
