"""The import layers of docs/design/architecture.md hold: every module imports only from lower layers (so there
are no cycles), and nothing below the runs imports them. A new import that climbs fails here with its file."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A module, or a package counted as one (all its files share the package's layer).
LAYERS = {
    "errors": 1, "distributed": 1, "cpu": 1, "allocator": 1, "losses": 1, "augment": 1, "kernels": 1,
    "fileio": 2, "models": 2,
    "data": 3, "checkpoint": 3, "grid": 3,
    "train": 4, "sampling": 4, "report": 4,
    "targets": 5,
    "metrics": 6, "ownership": 6,
    "attack": 7, "defense": 7, "evaluate": 7,
    "runs": 8, "serve": 8,
    "cli": 9,
    "__main__": 10,
}


def _unit(parts: tuple[str, ...]) -> str | None:
    """faststeal.attack.thief -> 'attack'; faststeal.cli -> 'cli'; the package's own __init__ -> None."""
    if len(parts) < 2 or parts[0] != "faststeal" or parts[1] == "__init__":
        return None
    return parts[1]


def _modules():
    for path in sorted((ROOT / "faststeal").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("").parts
        yield path, rel
    for path in sorted((ROOT / "kernels").glob("*.py")):        # shipped as faststeal.kernels
        yield path, ("faststeal", "kernels", path.stem)


def _imports(path: Path, module: tuple[str, ...]):
    package = module[:-1]      # a package's __init__ and its modules resolve `.x` alike
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield tuple(alias.name.split(".")), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + tuple(node.module.split(".")) if node.module else base
            else:
                target = tuple((node.module or "").split("."))
            if node.module is None or not node.level:
                for alias in node.names:     # `from . import x` and `from faststeal import x` name modules
                    yield target + (alias.name,), node.lineno
            else:
                yield target, node.lineno


def test_every_import_points_down_the_layers():
    climbs, unknown = [], set()
    for path, module in _modules():
        here = _unit(module)
        if here is None:
            continue
        if here not in LAYERS:
            unknown.add(here)
            continue
        for target, line in _imports(path, module):
            there = _unit(target)
            if there is None or there == here:
                continue
            if there not in LAYERS:
                if (ROOT / "faststeal" / there).exists() or (ROOT / "faststeal" / f"{there}.py").exists():
                    unknown.add(there)
                continue
            if LAYERS[there] >= LAYERS[here]:
                climbs.append(f"{path.relative_to(ROOT)}:{line} ({here}, layer {LAYERS[here]}) imports "
                              f"faststeal.{'.'.join(target[1:])} ({there}, layer {LAYERS[there]})")
    assert not unknown, f"give these modules a layer here and in docs/design/architecture.md: {sorted(unknown)}"
    assert not climbs, "\n".join(climbs)


def test_the_layer_table_names_every_module():
    found = {p.stem for p in (ROOT / "faststeal").glob("*.py") if p.stem != "__init__"}
    found |= {p.name for p in (ROOT / "faststeal").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert found | {"kernels"} == set(LAYERS)
