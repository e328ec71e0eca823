#!/usr/bin/env python3
"""Render the chart's values reference (a Markdown table) from values.yaml.

A key is documented by the comment block right above it that starts with "# --"
(the helm-docs convention); further "#" lines continue it, up to the key. Keys
without such a comment (parents such as `operator:`) are not listed; their
documented children are, with the full dotted path.

Usage:
  values_table.py VALUES_YAML                 print the table
  values_table.py VALUES_YAML DOC.md          replace the table between
                                              <!-- values-table:start --> and
                                              <!-- values-table:end --> in DOC.md
  values_table.py VALUES_YAML DOC.md --check  exit 1 if DOC.md's table is stale
"""

from __future__ import annotations

import json
import re
import sys

import yaml

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted path, description) in file order."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, key)
    comment: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            # A continuation of a "# --" block, or an unrelated comment (ignored).
            body = stripped[1:].strip()
            if comment is not None and body and not body.startswith("- name:"):
                comment.append(body)
            continue
        match = KEY.match(line)
        if not match or line.lstrip().startswith("- "):
            if stripped:
                comment = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if comment is not None:
            out.append((".".join(k for _, k in stack), " ".join(comment)))
        comment = None
    return out


def lookup(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def render(values_path: str) -> str:
    text = open(values_path, encoding="utf-8").read()
    values = yaml.safe_load(text)
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for path, description in documented_keys(text):
        default = json.dumps(lookup(values, path), separators=(", ", ": "))
        default = default.replace("|", "\\|")
        description = description.replace("|", "\\|")
        rows.append(f"| `{path}` | `{default}` | {description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    table = render(argv[1])
    if len(argv) == 2:
        sys.stdout.write(table)
        return 0
    doc_path = argv[2]
    doc = open(doc_path, encoding="utf-8").read()
    if START not in doc or END not in doc:
        print(f"{doc_path}: markers {START} / {END} not found", file=sys.stderr)
        return 2
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table}{END}{tail}"
    if "--check" in argv[3:]:
        if new != doc:
            print(f"STALE: the values table in {doc_path} does not match {argv[1]}", file=sys.stderr)
            return 1
        return 0
    if new != doc:
        open(doc_path, "w", encoding="utf-8").write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
