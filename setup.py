"""Only what pyproject.toml cannot say: the top-level kernels/ folder ships as faststeal.kernels."""
from setuptools import setup

setup(
    packages=[
        "faststeal", "faststeal.models", "faststeal.metrics", "faststeal.attack", "faststeal.defense",
        "faststeal.kernels",
    ],
    package_dir={"faststeal.kernels": "kernels"},
)
