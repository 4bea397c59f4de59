#!/usr/bin/env python3
"""The length rules of the house, checked (run by `make lint`): no Swift function over 60 lines unless the
comment right above it says why ("on purpose"), no Swift file over 500 lines.

A function is a `func`, `init`, `deinit` or `subscript` declaration; its length runs from that line to its
closing brace, found by counting braces outside string literals and comments. Prints one line per finding
(path:line: what) and exits 1 when there is any.

    python3 cluster/checks/lengths.py [DIR ...]     (default: Sources Tests)
"""
import os
import re
import sys

MAX_FUNCTION, MAX_FILE = 60, 500
REASON = "on purpose"
DECLARATION = re.compile(
    r"^\s*(?:@[\w()]+\s+)*"
    r"(?:(?:public|private|fileprivate|internal|open|static|class|final|override|mutating|nonmutating"
    r"|nonisolated|convenience|required)\s+)*"
    r"(func\s+[^\s(<]+|init[?!]?\s*[(<]|deinit\b|subscript\s*\()")


def code_only(line):
    """The line without string literals and end-of-line comments (braces in them do not count)."""
    out, i, quoted = [], 0, False
    while i < len(line):
        c = line[i]
        if quoted:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif line.startswith("//", i):
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def function_end(lines, start):
    """The index of the line closing the function declared at `start`, or None for a bodiless one."""
    depth, opened = 0, False
    for j in range(start, len(lines)):
        for c in code_only(lines[j]):
            if c == "{":
                depth, opened = depth + 1, True
            elif c == "}":
                depth -= 1
        if opened and depth <= 0:
            return j
        if not opened and j > start and not lines[j].strip():
            return None
    return None


def has_reason(lines, start):
    """Whether the comment block right above line `start` says why the function is long."""
    j = start - 1
    while j >= 0 and lines[j].strip().startswith(("//", "@")):
        if REASON in lines[j]:
            return True
        j -= 1
    return False


def check(path):
    lines = open(path, encoding="utf-8").read().rstrip("\n").split("\n")
    findings = []
    if len(lines) > MAX_FILE:
        findings.append(f"{path}:1: {len(lines)} lines, over {MAX_FILE}: split the file")
    for i, line in enumerate(lines):
        m = DECLARATION.match(line)
        if not m:
            continue
        end = function_end(lines, i)
        if end is None:
            continue
        n = end - i + 1
        if n > MAX_FUNCTION and not has_reason(lines, i):
            name = m.group(1).strip("(< ")
            findings.append(
                f"{path}:{i + 1}: {name} is {n} lines, over {MAX_FUNCTION}: split it, or say why above it ('{REASON}')")
    return findings


def main(roots):
    findings = []
    for root in roots:
        for directory, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                if name.endswith(".swift"):
                    findings += check(os.path.join(directory, name))
    for f in findings:
        print(f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["Sources", "Tests"]))
