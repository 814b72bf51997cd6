"""Write each kzoo package's `__init__.pyi` (SPEC 1 lazy loading): its submodules and the
names its `__init__.py` hands on lazily, as plain imports a type checker, an IDE or an
import-graph tool can follow; and the public names `__init__.py` defines itself.

    python dev/stubs.py        (from a checkout, after adding a module or an export)

tests/test_imports.py checks that every stub names exactly what its package holds.
"""

import ast
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def packages():
    """kzoo and each of its sub-packages whose __init__.py loads names lazily."""
    for init in sorted((ROOT / "kzoo").rglob("__init__.py")):
        if "lazy_exports(" in init.read_text(encoding="utf-8") or init.parent.name == "kzoo":
            yield init


def submodules(init):
    folder = init.parent
    found = [p.stem for p in folder.glob("*.py") if not p.name.startswith("_")]
    found += [p.name for p in folder.iterdir() if (p / "__init__.py").is_file()]
    return sorted(found)


def exports(tree):
    """{name: module} of the `_EXPORTS = {...}` literal (a `**NAME` entry is read from kzoo.registry)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            out = {}
            for key, value in zip(node.value.keys, node.value.values):
                if key is None:  # **BUILDER_MODULES
                    from kzoo.registry import BUILDER_MODULES
                    out.update(BUILDER_MODULES)
                else:
                    out[ast.literal_eval(key)] = ast.literal_eval(value)
            return out
    return {}


def own_names(tree):
    """Public functions, classes and constants that __init__.py defines itself, as stub lines."""
    lines = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            node.body, node.decorator_list = [ast.Expr(ast.Constant(...))], []
            lines.append(ast.unparse(node))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and (not target.id.startswith("_") or target.id == "__version__"):
                    lines.append(f"{target.id}: {type(ast.literal_eval(node.value)).__name__}"
                                 if _literal(node.value) else f"{target.id}: object")
    return lines


def _literal(value):
    try:
        ast.literal_eval(value)
        return True
    except ValueError:
        return False


def stub_text(init):
    package = ".".join(init.parent.relative_to(ROOT).parts)
    tree = ast.parse(init.read_text(encoding="utf-8"))
    lines = [f'"""{package}: what it holds, for tools; the names load on first use (tests/test_imports.py '
             f'checks this file)."""', ""]
    lines += [f"from {package} import {m} as {m}" for m in submodules(init)]
    by_module = {}
    for name, module in exports(tree).items():
        by_module.setdefault(module, []).append(name)
    lines += [f"from {module} import {', '.join(f'{n} as {n}' for n in sorted(names))}"
              for module, names in sorted(by_module.items())]
    own = own_names(tree)
    return "\n".join(lines + ([""] + own if own else [])) + "\n"


def main():
    os.chdir(ROOT)
    for init in packages():
        init.with_suffix(".pyi").write_text(stub_text(init), encoding="utf-8")
        print(init.with_suffix(".pyi").relative_to(ROOT))


if __name__ == "__main__":
    main()
