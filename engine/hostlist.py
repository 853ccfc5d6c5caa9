"""SLURM host lists (``gpu-a[01-03,7]-ib,login1``) expanded to host names, as ``scontrol show hostnames``."""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess

_ITEM_SPLIT = re.compile(r",(?![^\[]*\])")  # commas outside brackets
_PART = re.compile(r"\[([^\]]*)\]|([^\[\]]+)")


def _expand_ranges(text: str, hostlist: str) -> list[str]:
    """``01-03,7`` -> ``['01', '02', '03', '7']`` (zero padding kept from the range's first bound)."""
    values = []
    for piece in text.split(","):
        piece = piece.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", piece)
        if match is None:
            raise ValueError(f"SLURM host list {hostlist!r}: cannot read the range {piece!r} in [{text}]")
        start, end = match.group(1), match.group(2) or match.group(1)
        if int(end) < int(start):
            raise ValueError(f"SLURM host list {hostlist!r}: range {piece!r} runs backwards")
        values.extend(str(number).zfill(len(start)) for number in range(int(start), int(end) + 1))
    return values


def _expand_item(item: str, hostlist: str) -> list[str]:
    if item.count("[") != item.count("]"):
        raise ValueError(f"SLURM host list {hostlist!r}: unbalanced brackets in {item!r}")
    choices: list[list[str]] = []
    position = 0
    for match in _PART.finditer(item):
        if match.start() != position:
            raise ValueError(f"SLURM host list {hostlist!r}: cannot read {item!r}")
        position = match.end()
        choices.append(_expand_ranges(match.group(1), hostlist) if match.group(1) is not None else [match.group(2)])
    if position != len(item):
        raise ValueError(f"SLURM host list {hostlist!r}: cannot read {item!r}")
    return ["".join(parts) for parts in itertools.product(*choices)]


def expand_hostlist(hostlist: str, use_scontrol: bool = True) -> list[str]:
    """Every host of a SLURM node list, in SLURM's order.

    Forms: ``a,b``; ``node[1-3,7]``; zero padding ``a[01-03]``; several bracket groups
    (``n[1-2]x[3-4]``, ``a[1-2]-b[3-4]``, the last group varying fastest as in SLURM); text after
    the brackets (``gpu-a[1-2]-ib``, ``node[1-2].cluster``). ``scontrol show hostnames`` is asked
    first when it is on PATH (it knows every form SLURM accepts); our parser is the fallback.

    Raises:
        ValueError: a list neither can read, naming it.
    """
    text = hostlist.strip()
    if not text:
        raise ValueError("empty SLURM host list")
    if use_scontrol and shutil.which("scontrol"):
        try:
            done = subprocess.run(["scontrol", "show", "hostnames", text], capture_output=True, text=True,
                                  timeout=30, check=True)
            hosts = done.stdout.split()
            if hosts:
                return hosts
        except (OSError, subprocess.SubprocessError):
            pass
    hosts = []
    for item in _ITEM_SPLIT.split(text):
        if item.strip():
            hosts.extend(_expand_item(item.strip(), text))
    return hosts
