#!/usr/bin/env python3
"""Import cycles between the files of `src/` (Rust) and `static/` (the page's JavaScript).

    python3 scripts/import-cycles.py          # prints each cycle; exits 1 if there is one

Rust: a file depends on the module file every `crate::…` or `super::…` path in it names (in `use`
lines and in code), resolved to the deepest module file that exists (`crate::backbone::fold::X` is
`src/backbone/fold.rs`, `crate::backbone::X` is `src/backbone/mod.rs`). A module's own declarations
of its children (`pub mod fold;`) and its re-exports of them (`pub use fold::X`) are not uses, and
neither is code under `#[cfg(test)]` (unit tests may use anything) or a comment. JavaScript: a file depends on
every file it imports (`import … from './x.js'`, and `import('./x.js')`).
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rust_graph():
    src = os.path.join(ROOT, "src")
    files = {}
    for dirpath, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs") and "bin" not in os.path.relpath(dirpath, src).split(os.sep):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, src)
                if rel in ("main.rs",) or rel.startswith("cli" + os.sep):
                    continue  # the CLI binary's own modules sit above the library
                files[rel] = path

    def module_of(rel):
        parts = rel[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        return parts

    modules = {tuple(module_of(rel)): rel for rel in files}

    def resolve(parts):
        for n in range(len(parts), -1, -1):
            if tuple(parts[:n]) in modules:
                return modules[tuple(parts[:n])]
        return None

    graph = {}
    for rel, path in files.items():
        text = open(path, encoding="utf-8").read()
        cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))?\s+)?mod \w+\s*\{", text, re.M)
        if cut:
            text = text[: cut.start()]
        text = re.sub(r"//.*", "", text)  # comments (and doc links) are not uses
        me = module_of(rel)
        deps = set()
        for m in re.finditer(r"\bcrate((?:::\w+)+)", text):
            target = resolve(m.group(1).split("::")[1:])
            if target and target != rel:
                deps.add(target)
        for m in re.finditer(r"\b((?:super::)+)((?:\w+::)*\w+)", text):
            ups = m.group(1).count("super::")
            # In `foo/mod.rs` the module is `foo`, so `super` is its parent; likewise in `foo/bar.rs`.
            base = me[: len(me) - ups]
            target = resolve(base + m.group(2).split("::"))
            if target and target != rel:
                deps.add(target)
        # `pub use child::X` / `use child::X` in a mod.rs names its own child: a declaration.
        graph[rel] = {d for d in deps if not (rel.endswith("mod.rs") and module_of(d)[:-1] == me)}
    return {f"src/{k}": {f"src/{d}" for d in v} for k, v in graph.items()}


def js_graph():
    static = os.path.join(ROOT, "static")
    graph = {}
    for dirpath, _, names in os.walk(static):
        for name in names:
            if not name.endswith(".js"):
                continue
            path = os.path.join(dirpath, name)
            text = open(path, encoding="utf-8").read()
            deps = set()
            for m in re.finditer(r"""(?:from\s+|import\s*\(\s*)['"](\.{1,2}/[^'"]+\.js)['"]""", text):
                target = os.path.normpath(os.path.join(dirpath, m.group(1)))
                if os.path.exists(target):
                    deps.add(os.path.relpath(target, ROOT))
            graph[os.path.relpath(path, ROOT)] = deps
    return graph


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    found = 0
    for name, graph in (("src", rust_graph()), ("static", js_graph())):
        found_here = cycles(graph)
        for component in found_here:
            print(f"{name}: a cycle through {len(component)} files: " + ", ".join(component))
            for f in component:
                inside = sorted(d for d in graph[f] if d in component)
                print(f"  {f} imports {', '.join(inside)}")
        if not found_here:
            print(f"{name}: no import cycle ({len(graph)} files)")
        found += len(found_here)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
