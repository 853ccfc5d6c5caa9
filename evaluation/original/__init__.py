"""The original evaluator's exact order of equal scores, emulated (docs/protocol.md, sections 2-3): its
per-K path (``protocol``), numpy 1.21.6's introsort (``numpy_argsort``) and a loop-for-loop mirror of its
code used as test oracle and benchmark baseline (``reference``)."""
