"""A Python environment with only some of this one's distributions and what they require: what a
user who has MLflow and a model's requirements, but not uos, has. Built in seconds and offline: a
new virtual environment whose site-packages links to the installed files of those distributions
(their code and their .dist-info, so that importlib.metadata and MLflow's version checks see
them), and nothing else.

    python = envs.venv_with(tmp_path / "env", ["mlflow", "torch==2.13.0"])
    subprocess.run([python, "-c", "import uos"])  # fails: uos is not there
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def closure(requirements: list[str]) -> set[str]:
    """The distributions `requirements` name and, recursively, those they require (markers
    evaluated here, extras not followed): the normalised names of what is installed."""
    seen: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # required only on other platforms or Pythons
        seen.add(name)
        for line in distribution.requires or []:
            required = Requirement(line)
            if required.marker is None or required.marker.evaluate({"extra": ""}):
                pending.append(required)
    return seen


def venv_with(folder: Path, requirements: list[str]) -> Path:
    """A virtual environment in `folder` with the distributions of `closure(requirements)`; its
    python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for name in sorted(closure(requirements)):
        distribution = metadata.distribution(name)
        root = Path(distribution.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in distribution.files or [] if not str(f).startswith("..")}
        for top in tops:
            if top.endswith(".pth") or not (root / top).exists() or (site / top).exists():
                continue  # .pth files run code at start-up (an editable install's finder)
            (site / top).symlink_to(root / top)
    return folder / "bin" / "python"
