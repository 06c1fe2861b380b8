"""sphinx-gallery's hooks for resode's examples (docs/conf.py names them by their dotted path).

Every example takes an output folder as its first argument and writes its figures there with
:mod:`resode.plot` (which draws on Agg figures of its own, not through pyplot, so sphinx-gallery's
matplotlib scraper does not see them). :func:`reset_argv` gives each example a scratch folder of
its own and :func:`scrape_files` shows the images that a code block wrote there (PNG, GIF, JPEG,
SVG), in the order they were written, right after that block. Figures drawn with pyplot are
still captured by sphinx-gallery's own matplotlib scraper.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["reset_argv", "runnable_pattern", "scrape_files"]

IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".svg")

# src_file -> (the example's scratch folder, the images already shown: path -> mtime_ns)
_SCRATCH: dict[str, tuple[tempfile.TemporaryDirectory[str], dict[Path, int]]] = {}


class _ResetArgv:
    """``sys.argv[1:]`` for an example: a fresh scratch folder (removed at exit)."""

    def __call__(self, gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list[str]:
        src_file = str(script_vars["src_file"])
        scratch = tempfile.TemporaryDirectory(prefix=f"resode-gallery-{Path(src_file).stem}-")
        _SCRATCH[src_file] = (scratch, {})
        return [str(Path(scratch.name) / "out")]

    def __repr__(self) -> str:  # sphinx-gallery hashes the configuration by its repr
        return "resode_gallery.reset_argv"


reset_argv = _ResetArgv()


def _new_images(folder: Path, shown: dict[Path, int]) -> list[Path]:
    """The images under ``folder`` written since the last call, oldest first."""
    found = []
    for path in folder.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            stamp = path.stat().st_mtime_ns
            if shown.get(path) != stamp:
                shown[path] = stamp
                found.append((stamp, str(path), path))
    return [path for _, _, path in sorted(found)]


def _copy_image(source: Path, target_png: Path) -> Path:
    """Copy ``source`` next to sphinx-gallery's ``target_png`` with its own suffix; a GIF or
    SVG also gets a PNG of its first frame there (sphinx-gallery draws thumbnails from it)."""
    target = target_png.with_suffix(source.suffix.lower())
    shutil.copyfile(source, target)
    if target != target_png and source.suffix.lower() == ".gif":
        from PIL import Image

        with Image.open(source) as image:
            image.convert("RGB").save(target_png)
    return target


class _ScrapeFiles:
    """An image scraper: the images the current block wrote into the example's folder."""

    def __call__(self, block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
        from sphinx_gallery.scrapers import figure_rst

        entry = _SCRATCH.get(str(block_vars["src_file"]))
        if entry is None:
            return ""
        scratch, shown = entry
        images = _new_images(Path(scratch.name), shown)
        paths = block_vars["image_path_iterator"]
        copied = [_copy_image(image, Path(target)) for image, target in zip(images, paths)]
        titles = ", ".join(image.name for image in images)
        return figure_rst(copied, gallery_conf["src_dir"], fig_titles=titles)

    def __repr__(self) -> str:
        return "resode_gallery.scrape_files"


scrape_files = _ScrapeFiles()


def runnable_pattern(examples: Path, missing: list[str]) -> str:
    """sphinx-gallery's ``filename_pattern``: every script in ``examples`` but those that
    import a module of ``missing`` (``torch``, ``jax``) or resode's layer for it."""
    importers = re.compile(
        r"^\s*(import|from)\s+(" + "|".join(missing) + r"|resode\.(" + "|".join(missing) + r"))\b"
        r"|^\s*from\s+resode\s+import\s+.*\b(" + "|".join(missing) + r")\b",
        re.MULTILINE,
    )
    runnable = [
        re.escape(path.name)
        for path in sorted(examples.glob("*.py"))
        if not importers.search(path.read_text(encoding="utf-8"))
    ]
    return r"[\\/](" + "|".join(runnable) + r")$" if runnable else r"^$"
