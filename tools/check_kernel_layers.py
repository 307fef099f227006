#!/usr/bin/env python3
"""Checks the layering of phiq-kernels (kernels/src): every module imports only modules
of its own layer or below, the import graph between files has no cycle, and
`#[cfg(target_arch ...)]` appears only where the architecture is chosen.

An import is any `crate::a::b` path in the code (`use` lines and inline paths, doc
comments excluded) or `super::` path, resolved to the file that defines it. A module's
layer is that of its top-level name (LAYERS below); `lib.rs` is the root and exempt.

Usage: python3 tools/check_kernel_layers.py [--graph]   (exit status 1 on a violation)
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels", "src")

# Layer of each top-level module (kernels/src/lib.rs says what each layer is).
LAYERS = {
    "isa": 0, "format": 0, "error": 0, "buffer": 0, "par": 0,
    "quant": 1,
    "reference": 2,
    "contract": 3,
    "arch": 4,
    "select": 5,
    "matmul": 6, "gemm": 6, "attention": 6, "ops": 6,
    "dynamic": 7,
}

# The only files that may say `target_arch` in a cfg: CPU detection, the arch folder
# declarations, the selection table, and the x86 kernels themselves (which are compiled
# only on x86-64 and never test for it).
CFG_ALLOWED = ("isa.rs", "arch/mod.rs", "select.rs")


def module_of(rel):
    """kernels/src-relative path -> module path list, e.g. arch/x86/mod.rs -> [arch, x86]."""
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def file_of(mod, files):
    """The file defining module path `mod` (longest existing prefix), or None."""
    for n in range(len(mod), 0, -1):
        for cand in ("/".join(mod[:n]) + ".rs", "/".join(mod[:n]) + "/mod.rs"):
            if cand in files:
                return cand
    return None


def code_lines(text):
    """The lines of `text` that are code: comments dropped, and the unit tests at the end
    of a file (from `#[cfg(test)]` on), whose `super` is the file itself."""
    for line in text.split("\n"):
        if line.strip() == "#[cfg(test)]":
            return
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield line.split("//")[0] if "://" not in line else line


def imports(rel, text, files):
    """Files `rel` refers to through crate:: or super:: paths."""
    mod = module_of(rel)
    # A mod.rs's `super` is its parent; a file's `super` is its directory's module.
    here = mod
    deps = set()
    code = "\n".join(code_lines(text))
    # Expand `use crate::a::{b, c::d}` groups one level: enough to name the files.
    for m in re.finditer(r"\bcrate((?:::[A-Za-z_][A-Za-z_0-9]*)+)(::\{([^}]*)\})?", code):
        base = m.group(1).split("::")[1:]
        targets = [base]
        if m.group(3):
            for item in m.group(3).split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    targets.append(base + item.split("::"))
        for t in targets:
            f = file_of(t, files)
            if f:
                deps.add(f)
    for m in re.finditer(r"\b((?:super::)+)((?:[A-Za-z_][A-Za-z_0-9]*::)*[A-Za-z_][A-Za-z_0-9]*)?", code):
        ups = m.group(1).count("super::")
        base = here[: len(here) - ups]
        rest = (m.group(2) or "").split("::") if m.group(2) else []
        f = file_of(base + rest, files) if base + rest else None
        if f:
            deps.add(f)
    # `use child::…` for a child module the file declares (`mod child;`).
    children = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_0-9]+);", code, re.M))
    for m in re.finditer(r"\buse ([a-z_0-9]+)::", code):
        if m.group(1) in children:
            f = file_of(mod + [m.group(1)], files)
            if f:
                deps.add(f)
    deps.discard(rel)
    return deps


def main():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(dirpath, n)
                files[os.path.relpath(p, ROOT).replace(os.sep, "/")] = open(p, encoding="utf-8").read()
    bad = []
    graph = {}
    for rel, text in sorted(files.items()):
        if rel == "lib.rs":
            continue
        top = module_of(rel)[0]
        if top not in LAYERS:
            bad.append(f"{rel}: module '{top}' has no layer in tools/check_kernel_layers.py")
            continue
        deps = {d for d in imports(rel, text, files) if d != "lib.rs"}
        graph[rel] = deps
        for d in sorted(deps):
            dtop = module_of(d)[0]
            if LAYERS.get(dtop, 99) > LAYERS[top]:
                bad.append(
                    f"{rel} (layer {LAYERS[top]}, {top}) imports {d} (layer {LAYERS[dtop]}, {dtop})"
                )
        if rel not in CFG_ALLOWED and not rel.startswith("arch/x86/"):
            for i, line in enumerate(text.split("\n"), 1):
                if "target_arch" in line and not line.strip().startswith("//"):
                    bad.append(f"{rel}:{i}: target_arch outside the selection: {line.strip()}")
    # Cycles between files (Tarjan's strongly connected components).
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    for comp in sccs:
        bad.append("import cycle among: " + ", ".join(comp))
    if "--graph" in sys.argv:
        for v in sorted(graph):
            print(f"{v} -> {', '.join(sorted(graph[v])) or '-'}")
    if bad:
        for b in bad:
            print("check_kernel_layers:", b)
        sys.exit(1)
    print(f"check_kernel_layers: {len(graph)} files, layers respected, no import cycle")


if __name__ == "__main__":
    main()
