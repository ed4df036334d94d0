#!/usr/bin/env python3
"""Draws the web app's icons (static/icons/): a flame on a wick, on the page's accent blue.

Run once after changing the drawing; the PNGs are committed. Needs Pillow.
  python3 scripts/make-icons.py
"""
import math
import pathlib

from PIL import Image, ImageDraw

ACCENT = (10, 102, 194)
OUT = pathlib.Path(__file__).resolve().parent.parent / "static" / "icons"


def flame(draw, cx, top, bottom, half_width, fill):
    """A teardrop: a point at `top`, round at `bottom`."""
    r = half_width
    cy = bottom - r
    points = []
    for i in range(181):
        a = math.pi * i / 180  # the round bottom, from right to left
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    for i in range(61):  # the left side up to the point, then down the right
        t = i / 60
        points.append((cx - r * (1 - t) ** 1.5, cy - (cy - top) * t))
    for i in range(61):
        t = 1 - i / 60
        points.append((cx + r * (1 - t) ** 1.5, cy - (cy - top) * t))
    draw.polygon(points, fill=fill)


def icon(size, maskable):
    scale = 4  # drawn large, then shrunk: smooth edges
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if maskable:
        draw.rectangle((0, 0, s, s), fill=ACCENT)
        inner = 0.6  # the maskable safe zone is the central 80% circle
    else:
        draw.rounded_rectangle((0, 0, s - 1, s - 1), radius=s * 0.22, fill=ACCENT)
        inner = 0.8
    u = s * inner
    cx, base = s / 2, s / 2 + u * 0.42
    flame(draw, cx, s / 2 - u * 0.42, base - u * 0.12, u * 0.2, (255, 176, 46))
    flame(draw, cx, s / 2 - u * 0.12, base - u * 0.14, u * 0.1, (255, 238, 170))
    w = max(2, u * 0.025)
    draw.line((cx, base - u * 0.16, cx, base), fill=(30, 30, 30), width=int(w))
    return image.resize((size, size), Image.LANCZOS)


OUT.mkdir(parents=True, exist_ok=True)
for size in (192, 512):
    icon(size, False).save(OUT / f"icon-{size}.png", optimize=True)
icon(512, True).save(OUT / "maskable-512.png", optimize=True)
icon(180, True).convert("RGB").save(OUT / "apple-touch-icon.png", optimize=True)
