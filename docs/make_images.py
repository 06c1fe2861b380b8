"""Regenerate the README's pictures in docs/images/: the quick start's run (`resode demo`),
the large-time study (`resode sweep --experiment large-time`, about a minute on 2 cores) and
leia's experiment (`examples/leia_chess3.py`, about 20 s).

Run from the repository root: python docs/make_images.py [demo] [study] [leia] (default: all)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGES = ("trajectories.gif", "decision_boundary.png", "history.png")


def demo(target: Path, scratch: Path) -> None:
    run = scratch / "demo"
    command = [sys.executable, "-m", "resode", "demo", "--out", str(run), "--no-progress"]
    subprocess.run(command, check=True)
    for name in IMAGES:
        shutil.copyfile(run / name, target / name)
        print(f"wrote {target / name}")


def study(target: Path, scratch: Path) -> None:
    """The large-time study and, for spheres and seed 0, the loss along the flow of the models
    trained with T = 1, 4 and 16, with and without the turnpike loss."""
    import resode
    import resode.plot
    from resode import cli

    out = scratch / "study"
    command = [sys.executable, "-m", "resode", "sweep", "--experiment", "large-time", "--out",
               str(out), "--no-progress"]  # fmt: skip
    subprocess.run(command, check=True)
    resode.plot.sweep(out / "results.csv", target / "large_time.png", x="T", y="train_loss",
                      hue="turnpike", col="dataset")  # fmt: skip
    print(f"wrote {target / 'large_time.png'}")
    spec = Path(resode.__file__).parent / "experiments" / "large_time.toml"
    models, data = {}, None
    for run in resode.sweep.expand(spec):
        g = run.grid
        if g["dataset"] == "spheres" and g["seed"] == 0 and g["T"] in (1.0, 4.0, 16.0):
            label = f"T = {g['T']:g}" + (", turnpike" if g["turnpike"] else "")
            models[label] = resode.load(out / "runs" / run.id / "model.npz")
            if data is None:  # the run's own training split
                args = cli.build_parser().parse_args(["train", *run.argv])
                data = cli._dataset(args)
    X_tr, _, y_tr, _ = data
    path = target / "loss_along_time.png"
    order = sorted(models, key=lambda k: (float(k.split()[2].rstrip(",")), k))
    resode.plot.loss_along_time({k: models[k] for k in order}, X_tr, y_tr, path)
    print(f"wrote {path}")


LEIA_IMAGES = (
    "decision_regions.png",
    "decision_regions.gif",
    "loss_along_time.png",
    "features.png",
    "feature_history.gif",
)


def leia(target: Path, scratch: Path) -> None:
    """examples/leia_chess3.py's figures, as leia_<name>."""
    run = scratch / "leia"
    script = Path(__file__).resolve().parents[1] / "examples" / "leia_chess3.py"
    subprocess.run([sys.executable, str(script), str(run)], check=True)
    for name in LEIA_IMAGES:
        shutil.copyfile(run / name, target / f"leia_{name}")
        print(f"wrote {target / f'leia_{name}'}")


def main() -> None:
    target = Path(__file__).resolve().parent / "images"
    parts = {"demo": demo, "study": study, "leia": leia}
    chosen = sys.argv[1:] or list(parts)
    with tempfile.TemporaryDirectory() as scratch:
        for name in chosen:
            parts[name](target, Path(scratch))


if __name__ == "__main__":
    main()
