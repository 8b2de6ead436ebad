"""Draw the app icon: a page whose last line ends in a cursor and a grey ghost continuation.

One list of shapes (on a 256-unit canvas) is written out twice: as resources/icons/
writer-app.svg and, painted with QPainter offscreen, as writer-app-<size>.png in the
standard sizes. Small sizes get a simpler drawing (fewer, thicker lines) because thin
lines blur into mush at 16-24 px.

    python packaging/make_icons.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SMALL_ICON_LIMIT = 32  # sizes up to this use the simplified drawing
CANVAS = 256
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "icons"

BACKGROUND = "#2b4c7e"  # ink blue
PAGE = "#fbfaf6"
FOLD = "#d5dbe4"
INK = "#2b3440"
GHOST = "#a9b2bf"
CURSOR = "#e8833a"


@dataclass(frozen=True)
class RoundedRect:
    x: float
    y: float
    width: float
    height: float
    radius: float
    fill: str


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]
    fill: str


@dataclass(frozen=True)
class Stroke:
    """A straight line with round caps (text lines, the cursor)."""

    x1: float
    y1: float
    x2: float
    y2: float
    width: float
    color: str
    round_caps: bool = True


Shape = RoundedRect | Polygon | Stroke


def icon_shapes(small: bool) -> list[Shape]:
    shapes: list[Shape] = [
        RoundedRect(16, 16, 224, 224, 48, BACKGROUND),
        Polygon(((64, 32), (160, 32), (192, 64), (192, 224), (64, 224)), PAGE),
        Polygon(((160, 32), (160, 64), (192, 64)), FOLD),
    ]
    if small:
        # Two rows on a 16-unit grid (one pixel at 16 px) with flat caps, so the
        # 16 and 32 px icons are crisp: a written line, then words, cursor, ghost words.
        shapes += [
            Stroke(80, 96, 176, 96, 32, INK, round_caps=False),
            Stroke(80, 160, 112, 160, 32, INK, round_caps=False),
            Stroke(120, 128, 120, 192, 16, CURSOR, round_caps=False),
            Stroke(144, 160, 176, 160, 32, GHOST, round_caps=False),
        ]
    else:
        shapes += [
            Stroke(84, 96, 172, 96, 11, INK),
            Stroke(84, 124, 172, 124, 11, INK),
            Stroke(84, 152, 132, 152, 11, INK),
            Stroke(144, 138, 144, 166, 6, CURSOR),
            Stroke(156, 152, 172, 152, 11, GHOST),
            Stroke(84, 180, 150, 180, 11, GHOST),
        ]
    return shapes


def to_svg(shapes: list[Shape]) -> str:
    body = []
    for shape in shapes:
        if isinstance(shape, RoundedRect):
            body.append(
                f'  <rect x="{shape.x:g}" y="{shape.y:g}" width="{shape.width:g}" '
                f'height="{shape.height:g}" rx="{shape.radius:g}" fill="{shape.fill}"/>'
            )
        elif isinstance(shape, Polygon):
            points = " ".join(f"{x:g},{y:g}" for x, y in shape.points)
            body.append(f'  <polygon points="{points}" fill="{shape.fill}"/>')
        else:
            cap = "round" if shape.round_caps else "butt"
            body.append(
                f'  <line x1="{shape.x1:g}" y1="{shape.y1:g}" x2="{shape.x2:g}" y2="{shape.y2:g}" '
                f'stroke="{shape.color}" stroke-width="{shape.width:g}" stroke-linecap="{cap}"/>'
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CANVAS}" height="{CANVAS}" '
        f'viewBox="0 0 {CANVAS} {CANVAS}">\n'
        "  <title>writer-app</title>\n" + "\n".join(body) + "\n</svg>\n"
    )


def render_png(shapes: list[Shape], size: int, path: Path) -> None:
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPolygonF

    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.scale(size / CANVAS, size / CANVAS)
        for shape in shapes:
            if isinstance(shape, Stroke):
                pen = QPen(QColor(shape.color), shape.width)
                cap = Qt.PenCapStyle.RoundCap if shape.round_caps else Qt.PenCapStyle.FlatCap
                pen.setCapStyle(cap)
                painter.setPen(pen)
                painter.drawLine(QPointF(shape.x1, shape.y1), QPointF(shape.x2, shape.y2))
                continue
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(QColor(shape.fill)))
            if isinstance(shape, RoundedRect):
                rect = QRectF(shape.x, shape.y, shape.width, shape.height)
                painter.drawRoundedRect(rect, shape.radius, shape.radius)
            else:
                painter.drawPolygon(QPolygonF([QPointF(x, y) for x, y in shape.points]))
    finally:
        painter.end()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write the icon {path}")


def make_icons(out_dir: Path) -> list[Path]:
    """Write writer-app.svg and every PNG size into out_dir; returns the files written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    # Raster painting mostly works without an application, but Qt warns and some
    # builds crash on colour handling without one.
    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - kept alive
    out_dir.mkdir(parents=True, exist_ok=True)
    svg_path = out_dir / "writer-app.svg"
    svg_path.write_text(to_svg(icon_shapes(small=False)), encoding="utf-8")
    written = [svg_path]
    for size in SIZES:
        png_path = out_dir / f"writer-app-{size}.png"
        render_png(icon_shapes(small=size <= SMALL_ICON_LIMIT), size, png_path)
        written.append(png_path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the icons")
    args = parser.parse_args(argv)
    for path in make_icons(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
