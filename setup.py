"""Installs gloro_local; versions are pinned once, in requirements*.txt."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name):
    lines = (HERE / name).read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


setup(
    name="gloro_local",
    version="0.1.0",
    description="Keras 3 l2-certifiably-robust networks with efficient local Lipschitz bounds",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gloro_local", "gloro_local.*"]),
    package_data={"gloro_local": ["resources/*.npz"]},
    python_requires=">=3.10",
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt"),
                    "tensorboard": _requirements("requirements-tensorboard.txt")},
)
