"""Build a 64x64 RGB image folder from the desktop icon themes Debian ships, for runs on real RGB data.

No RGB photo dataset installs on these machines, but icon themes do (`apt-get install oxygen-icon-theme
faenza-icon-theme lxde-icon-theme gnome-icon-theme mate-icon-theme`): thousands of hand-drawn colour images.
Each icon name is taken once per theme, from its 64x64 file when there is one, otherwise the smallest larger
one resized down; transparency is composited onto white. Run:

    python scripts/icons64.py --out data/icons64
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image

THEMES = ("oxygen", "Faenza", "nuoveXT2", "gnome", "mate")
SIZE_DIR = re.compile(r"^(\d+)(?:x\d+)?$")


def icon_files(theme_dir: Path) -> dict[str, Path]:
    """Name -> best file (64 px, else the smallest size above 64) among a theme's PNG icons."""
    best: dict[str, tuple[int, Path]] = {}
    for path in sorted(theme_dir.rglob("*.png")):
        sizes = [int(m.group(1)) for part in path.parts if (m := SIZE_DIR.match(part))]
        if not sizes or sizes[-1] < 64:
            continue
        size, key = sizes[-1], path.stem
        rank = 0 if size == 64 else size
        if key not in best or rank < best[key][0]:
            best[key] = (rank, path)
    return {k: v[1] for k, v in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--icons", default="/usr/share/icons", help="folder holding the icon themes")
    parser.add_argument("--out", required=True, help="output folder (created)")
    args = parser.parse_args(argv)
    root, out = Path(args.icons), Path(args.out)
    missing = [t for t in THEMES if not (root / t).is_dir()]
    if missing:
        print(f"error: themes not installed under {root}: {', '.join(missing)} "
              "(apt-get install oxygen-icon-theme faenza-icon-theme lxde-icon-theme gnome-icon-theme "
              "mate-icon-theme)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for theme in THEMES:
        for name, path in icon_files(root / theme).items():
            try:
                image = Image.open(path).convert("RGBA")
            except OSError:
                continue  # a broken file in a theme is skipped, not fatal
            if image.size != (64, 64):
                image = image.resize((64, 64), Image.LANCZOS)
            canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
            canvas.alpha_composite(image)
            canvas.convert("RGB").save(out / f"{theme}-{name}.png")
            written += 1
    print(f"{written} images in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
