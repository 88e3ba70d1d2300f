"""The Dockerfile as ops/build-context.sh and ops/validate.sh read it: its
instructions, one logical line each. Their Python steps import it (with ops/ on
sys.path); it needs nothing beyond the standard library."""

import os


def instructions(root):
    """The instructions of `root`/Dockerfile in order, stripped: continuation lines
    joined with a space; blank lines and comment lines between instructions left out."""
    lines, cur = [], ""
    for raw in open(os.path.join(root, "Dockerfile")):
        raw = raw.rstrip("\n")
        if raw.lstrip().startswith("#") and not cur:
            continue
        if raw.endswith("\\"):
            cur += raw[:-1] + " "
            continue
        cur += raw
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    return lines
