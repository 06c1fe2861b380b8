"""Regenerate the README's pictures in docs/images/ from `resode demo` (the quick start's run).

Run from the repository root: python docs/make_images.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGES = ("trajectories.gif", "decision_boundary.png", "history.png")


def main() -> None:
    target = Path(__file__).resolve().parent / "images"
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "demo"
        command = [sys.executable, "-m", "resode", "demo", "--out", str(run), "--no-progress"]
        subprocess.run(command, check=True)
        for name in IMAGES:
            shutil.copyfile(run / name, target / name)
            print(f"wrote {target / name}")


if __name__ == "__main__":
    main()
