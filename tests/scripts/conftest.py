"""The scripts are files, not package modules: each test file loads its script through ``load_script``."""
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def load_script():
    """load_script("name") -> scripts/name.py as a module, registered while the test file runs (dataclasses
    look their module up in sys.modules)."""
    loaded = []

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        loaded.append(spec.name)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
