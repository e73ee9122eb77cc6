#!/usr/bin/env python3
"""The values table of charts/nlds/README.md, from the `# --` comments of values.yaml (the
helm-docs convention: a `# --` comment, and the `#` lines after it, document the key below).

  values-table.py           check: every key is documented, and README.md's table is current
  values-table.py --write   rewrite README.md's table (between the values:begin/end markers)

A key must carry its own `# --` comment unless an ancestor documents it as a whole (an ancestor
with a comment and no documented key below it).
"""
import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"


def comments(text):
    """{(key, ...): description} of every key preceded by a `# --` comment block."""
    docs, stack, block = {}, [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            block = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if block is not None:
                block.append(stripped[1:].strip())
            continue
        m = re.match(r"^( *)([A-Za-z0-9_.-]+):", line)
        if not m or stripped.startswith("- "):
            block = None if not stripped else block
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        if block is not None:
            docs[tuple(stack)] = " ".join(b for b in block if b)
        block = None
    return docs


def undocumented(values, docs, path=()):
    missing = []
    for key, value in values.items():
        p = path + (key,)
        below = any(d[: len(p)] == p and len(d) > len(p) for d in docs)
        if isinstance(value, dict) and value and below:
            missing += undocumented(value, docs, p)
        elif p not in docs:
            missing.append(".".join(p))
    return missing


def kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


def default(v):
    text = json.dumps(v, separators=(", ", ": "))
    if isinstance(v, (dict, list)) and len(text) > 60:
        return "see `values.yaml`"
    return f"`{text}`"


def table(values, docs):
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, desc in docs.items():
        v = values
        for k in path:
            v = v[k]
        name = ".".join(f'"{k}"' if "-" in k else k for k in path)
        rows.append(f"| {name} | {kind(v)} | {default(v)} | {desc.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def main():
    text = (CHART / "values.yaml").read_text()
    values, docs = yaml.safe_load(text), comments(text)
    missing = undocumented(values, docs)
    if missing:
        sys.exit("values.yaml keys without a `# --` comment: " + ", ".join(missing))
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    head, rest = readme.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + table(values, docs) + END + tail
    if "--write" in sys.argv:
        readme_path.write_text(new)
        print(f"README.md: {len(docs)} values")
    elif new != readme:
        sys.exit("README.md's values table is not current: run charts/nlds/ci/values-table.py --write")
    else:
        print(f"  every key documented; README.md's table of {len(docs)} values is current")


if __name__ == "__main__":
    main()
