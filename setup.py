"""Only what pyproject.toml cannot say: the top-level kernels/ folder ships as faststeal.kernels.

Packages are found, never listed: every faststeal/<sub>/__init__.py (and kernels/<sub>/__init__.py) is in the wheel
as soon as it exists. pyproject's [tool.setuptools.packages.find] cannot add kernels/ under another name, so the
search is here. tests/test_packaging.py builds the wheel and checks it.
"""
from setuptools import find_packages, setup

FOUND = [
    *find_packages(include=["faststeal", "faststeal.*"]),
    "faststeal.kernels",
    *("faststeal.kernels." + name for name in find_packages("kernels")),
]

setup(packages=FOUND, package_dir={"faststeal.kernels": "kernels"})
