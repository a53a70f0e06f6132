"""Procedural ego-view street scenes drawn as labelled parts (geometry and labels).

A scene is drawn into a :class:`Canvas`: a ``uint16`` part map in which every drawn shape
is a *part* with its own appearance (base colour, texture amplitudes); every part belongs
to one *segment* (void, a stuff class, a crowd region or one thing instance). Shapes are
placed in a 3-D world (metres; X right, Y up, Z forward) and projected by a pinhole
:class:`Camera`, so that objects shrink toward the horizon; they are drawn far to near,
which gives correct occlusion. :mod:`upsnet_core.data.synthetic` turns parts into pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..categories import LABEL_DIVISOR, VOID_ID

# Cityscapes category ids (see upsnet_core/presets/cityscapes.json).
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 7, 8, 11, 12, 13, 17
TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY = 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

SHIFT = 4
"""Sub-pixel bits used for cv2 drawing."""
MAX_PARTS = np.iinfo(np.uint16).max
ONE = 1 << SHIFT
FAR_Z = 1000.0
"""Depth (m) that stands for the horizon."""

RGB = tuple[float, float, float]

# Base colours (0..1) per class; several per class and overlapping between classes so
# that colour alone does not give the class.
PALETTE: dict[int, list[RGB]] = {
    ROAD: [(0.33, 0.33, 0.35), (0.42, 0.41, 0.40), (0.28, 0.29, 0.31), (0.45, 0.40, 0.36)],
    SIDEWALK: [(0.62, 0.60, 0.58), (0.55, 0.42, 0.40), (0.70, 0.66, 0.58), (0.48, 0.48, 0.50)],
    BUILDING: [(0.55, 0.53, 0.50), (0.70, 0.62, 0.50), (0.55, 0.30, 0.25), (0.80, 0.78, 0.74),
               (0.40, 0.45, 0.52), (0.75, 0.68, 0.40), (0.35, 0.35, 0.36)],
    WALL: [(0.60, 0.58, 0.55), (0.50, 0.30, 0.26), (0.78, 0.76, 0.72), (0.42, 0.42, 0.45)],
    FENCE: [(0.45, 0.45, 0.47), (0.45, 0.32, 0.20), (0.25, 0.38, 0.28), (0.70, 0.70, 0.70)],
    POLE: [(0.45, 0.45, 0.45), (0.20, 0.28, 0.22), (0.15, 0.15, 0.16), (0.65, 0.65, 0.66)],
    TRAFFIC_LIGHT: [(0.12, 0.12, 0.12), (0.25, 0.25, 0.22), (0.70, 0.60, 0.15)],
    TRAFFIC_SIGN: [(0.80, 0.10, 0.10), (0.10, 0.30, 0.75), (0.90, 0.90, 0.90), (0.90, 0.75, 0.10),
                   (0.10, 0.50, 0.25), (0.55, 0.55, 0.57)],
    VEGETATION: [(0.20, 0.35, 0.12), (0.30, 0.42, 0.15), (0.15, 0.28, 0.15), (0.40, 0.45, 0.20)],
    TERRAIN: [(0.35, 0.50, 0.22), (0.50, 0.45, 0.30), (0.62, 0.56, 0.40), (0.30, 0.40, 0.20)],
    CAR: [(0.85, 0.85, 0.85), (0.10, 0.10, 0.11), (0.55, 0.56, 0.58), (0.60, 0.10, 0.10),
          (0.15, 0.20, 0.50), (0.15, 0.30, 0.20), (0.35, 0.35, 0.37)],
    TRUCK: [(0.85, 0.85, 0.82), (0.60, 0.15, 0.12), (0.20, 0.30, 0.55), (0.40, 0.40, 0.40)],
    BUS: [(0.85, 0.75, 0.15), (0.88, 0.88, 0.86), (0.65, 0.12, 0.12), (0.15, 0.30, 0.60)],
    TRAIN: [(0.90, 0.90, 0.88), (0.70, 0.15, 0.15), (0.85, 0.75, 0.20)],
    MOTORCYCLE: [(0.10, 0.10, 0.10), (0.65, 0.12, 0.10), (0.60, 0.60, 0.62), (0.15, 0.25, 0.55)],
    BICYCLE: [(0.10, 0.10, 0.10), (0.60, 0.60, 0.62), (0.60, 0.15, 0.15), (0.15, 0.40, 0.30)],
}
DARK_GLASS: RGB = (0.12, 0.14, 0.17)
TYRE: RGB = (0.06, 0.06, 0.06)
SKIN: list[RGB] = [(0.85, 0.68, 0.55), (0.62, 0.45, 0.33), (0.40, 0.28, 0.20),
                   (0.92, 0.78, 0.66)]

# Texture amplitudes (fine noise, coarse noise) per class family.
TEXTURE: dict[int, tuple[float, float]] = {
    ROAD: (0.10, 0.08), SIDEWALK: (0.08, 0.06), BUILDING: (0.05, 0.12), WALL: (0.08, 0.10),
    FENCE: (0.10, 0.06), VEGETATION: (0.30, 0.25), TERRAIN: (0.22, 0.18), SKY: (0.01, 0.06),
}
THING_TEXTURE = (0.03, 0.05)


@dataclass(frozen=True)
class Style:
    """Global look of a "robot": sky, light, fog, noise and colour grading."""

    name: str
    sky_horizon: RGB
    sky_top: RGB
    brightness: tuple[float, float]
    tint: RGB
    fog_color: RGB
    fog: tuple[float, float]
    noise: float
    saturation: float


STYLES: dict[str, Style] = {
    "default": Style("default", sky_horizon=(0.78, 0.84, 0.90), sky_top=(0.35, 0.55, 0.85),
                     brightness=(0.8, 1.15), tint=(1.0, 1.0, 1.0), fog_color=(0.80, 0.82, 0.85),
                     fog=(0.0, 0.25), noise=0.025, saturation=1.0),
    "dusk": Style("dusk", sky_horizon=(0.95, 0.55, 0.30), sky_top=(0.18, 0.16, 0.35),
                  brightness=(0.35, 0.6), tint=(1.1, 0.9, 1.05), fog_color=(0.55, 0.45, 0.50),
                  fog=(0.3, 0.6), noise=0.04, saturation=0.6),
}


@dataclass
class Camera:
    """Pinhole camera ``height`` metres above flat ground, looking along +Z."""

    focal: float
    cx: float
    horizon: float
    height: float
    image_height: int

    def project(self, points: np.ndarray) -> np.ndarray:
        """``(..., 3)`` world points (X, Y, Z), Z > 0 -> ``(..., 2)`` pixel (u, v)."""
        scale = self.focal / points[..., 2]
        out = np.empty(points.shape[:-1] + (2,))
        out[..., 0] = self.cx + scale * points[..., 0]
        out[..., 1] = self.horizon + scale * (self.height - points[..., 1])
        return out

    @property
    def near_z(self) -> float:
        """Depth of the ground seen at the bottom row."""
        return self.focal * self.height / (self.image_height - self.horizon)

    def pixels_per_metre(self, z: float) -> float:
        return self.focal / z


@dataclass
class Canvas:
    """Part map plus per-part appearance and per-segment labels.

    Part ``0`` and segment ``0`` are void. ``segments[s] = (category_id, instance)`` where
    ``instance`` is True for a thing instance, False for stuff, crowd and void.
    """

    height: int
    width: int
    parts: np.ndarray = field(init=False)
    part_segment: list[int] = field(default_factory=lambda: [0])
    part_color: list = field(default_factory=lambda: [(0.0, 0.0, 0.0)])
    part_texture: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])
    segments: list[tuple[int, bool]] = field(default_factory=lambda: [(VOID_ID, False)])
    _shared: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parts = np.zeros((self.height, self.width), dtype=np.uint16)

    def shared_segment(self, category_id: int) -> int:
        """The one segment of a stuff class or of a crowd region of a thing class."""
        if category_id not in self._shared:
            self._shared[category_id] = len(self.segments)
            self.segments.append((category_id, False))
        return self._shared[category_id]

    def instance_segment(self, category_id: int) -> int:
        self.segments.append((category_id, True))
        return len(self.segments) - 1

    def part(self, segment: int, color, texture: tuple[float, float] = THING_TEXTURE) -> int:
        """A new part of ``segment``; ``color`` RGB in [0, 1] (clipped when rendered)."""
        if len(self.part_segment) >= MAX_PARTS:
            raise RuntimeError("too many parts in one synthetic frame")
        self.part_segment.append(segment)
        self.part_color.append(color)
        self.part_texture.append(texture)
        return len(self.part_segment) - 1

    def polygons(self, part: int, polygons: list[np.ndarray] | np.ndarray) -> None:
        """Fill pixel polygons (float ``(K, 2)`` each, or one ``(N, K, 2)`` array)."""
        fixed = (np.round(polygons * ONE).astype(np.int32) if isinstance(polygons, np.ndarray)
                 else [np.round(p * ONE).astype(np.int32) for p in polygons])
        cv2.fillPoly(self.parts, fixed, int(part), cv2.LINE_8, SHIFT)

    def circle(self, part: int, center, radius: float, thickness: float = -1) -> None:
        cv2.circle(self.parts, _fixed(center), max(int(round(radius * ONE)), ONE), int(part),
                   -1 if thickness < 0 else max(1, int(round(thickness))), cv2.LINE_8, SHIFT)

    def line(self, part: int, start, end, thickness: float) -> None:
        cv2.line(self.parts, _fixed(start), _fixed(end), int(part),
                 max(1, int(round(thickness))), cv2.LINE_8, SHIFT)

    def rectangle(self, part: int, x0: float, y0: float, x1: float, y1: float) -> None:
        self.polygons(part, [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])])


def _fixed(point) -> tuple[int, int]:
    return int(round(point[0] * ONE)), int(round(point[1] * ONE))


def jitter(rng: np.random.Generator, color, amount: float = 0.12) -> np.ndarray:
    """Colour with independent multiplicative jitter per channel."""
    return np.clip(np.asarray(color) * rng.uniform(1 - amount, 1 + amount, 3), 0.0, 1.0)


def pick(rng: np.random.Generator, category_id: int, amount: float = 0.15) -> np.ndarray:
    palette = PALETTE[category_id]
    return jitter(rng, palette[rng.integers(len(palette))], amount)


def texture(rng: np.random.Generator, category_id: int) -> tuple[float, float]:
    fine, coarse = TEXTURE.get(category_id, THING_TEXTURE)
    scale = rng.uniform(0.5, 1.5)
    return fine * scale, coarse * scale


@dataclass
class Street:
    """Lateral layout (metres): road from ``-road_left`` to ``road_right``, then the
    sidewalks, an optional terrain verge, and the facade line. ``lanes`` are the centres
    of the lanes beside the ego lane (``|X| <= 1.6``), ``lines`` the lane boundaries."""

    road_left: float
    road_right: float
    sidewalk: tuple[float, float]
    verge: tuple[float, float]
    lanes: list[float]
    lines: list[float]

    def facade_x(self, side: int) -> float:
        i = 0 if side < 0 else 1
        edge = self.road_left if side < 0 else self.road_right
        return edge + self.sidewalk[i] + self.verge[i]

    def curb_x(self, side: int) -> float:
        return -self.road_left if side < 0 else self.road_right


class SceneBuilder:
    """Draws one random street scene into a :class:`Canvas`."""

    def __init__(self, rng: np.random.Generator, canvas: Canvas, style: Style):
        self.rng, self.canvas, self.style = rng, canvas, style
        h, w = canvas.height, canvas.width
        self.camera = Camera(focal=w * rng.uniform(0.5, 0.7), cx=w * rng.uniform(0.42, 0.58),
                             horizon=h * rng.uniform(0.36, 0.48), height=rng.uniform(1.3, 1.7),
                             image_height=h)
        self.min_z = 0.5 * self.camera.near_z
        self.street = self._street()
        self.objects: list[tuple[float, Callable[[], None]]] = []

    # ----------------------------------------------------------------- layout
    def _street(self) -> Street:
        rng = self.rng
        n_left, n_right = int(rng.integers(0, 3)), int(rng.integers(0, 2))
        lanes = [-3.2 * (i + 1) for i in range(n_left)] + [3.2 * (i + 1) for i in range(n_right)]
        lines = [-1.6 - 3.2 * i for i in range(n_left)] + [1.6 + 3.2 * i for i in range(n_right)]
        parking = rng.uniform(0.0, 2.4, 2) * (rng.random(2) < 0.5)
        verge = rng.uniform(0.5, 3.0, 2) * (rng.random(2) < 0.4)
        return Street(road_left=1.6 + 3.2 * n_left + parking[0],
                      road_right=1.6 + 3.2 * n_right + parking[1],
                      sidewalk=tuple(rng.uniform(1.5, 4.5, 2)), verge=tuple(verge), lanes=lanes,
                      lines=lines)

    def build(self) -> Camera:
        """Draw the whole scene; returns the camera used."""
        self._sky()
        self._ground()
        for side in (-1, 1):
            self._facades(side)
        self._street_furniture()
        self._traffic()
        self._pedestrians()
        self._clutter()
        for _, draw in sorted(self.objects, key=lambda item: -item[0]):
            draw()
        self._ego_vehicle()
        return self.camera

    # ------------------------------------------------------------ projection
    def ground_quad(self, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
        z0 = max(z0, self.min_z)
        return self.camera.project(np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]]))

    def wall_quad(self, x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
        """Vertical rectangle in the plane X = x (a facade seen from the street)."""
        z0 = max(z0, self.min_z)
        return self.camera.project(np.array([[x, y0, z0], [x, y0, z1], [x, y1, z1], [x, y1, z0]]))

    def front_quad(self, x0: float, x1: float, z: float, y0: float, y1: float) -> np.ndarray:
        """Vertical rectangle in the plane Z = z (facing the camera)."""
        return self.camera.project(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]))

    # ------------------------------------------------------------ background
    def _sky(self) -> None:
        c, st, rng = self.canvas, self.style, self.rng
        segment = c.shared_segment(SKY)
        top, bottom = jitter(rng, st.sky_top, 0.1), jitter(rng, st.sky_horizon, 0.1)
        bands, horizon = 24, self.camera.horizon
        for i in range(bands):
            t = i / (bands - 1)
            part = c.part(segment, top * (1 - t) + bottom * t, texture(rng, SKY))
            c.rectangle(part, 0, horizon * i / bands - 1, c.width, horizon * (i + 1) / bands + 1)

    def _ground(self) -> None:
        c, rng, s = self.canvas, self.rng, self.street
        terrain = c.part(c.shared_segment(TERRAIN), pick(rng, TERRAIN), texture(rng, TERRAIN))
        c.rectangle(terrain, 0, self.camera.horizon, c.width, c.height)
        road = c.shared_segment(ROAD)
        c.polygons(c.part(road, pick(rng, ROAD), texture(rng, ROAD)),
                   [self.ground_quad(-s.road_left, s.road_right, 0, FAR_Z)])
        self._markings(road)
        for side, i in ((-1, 0), (1, 1)):
            curb = s.curb_x(side)
            outer = curb + side * s.sidewalk[i]
            walk = c.part(c.shared_segment(SIDEWALK), pick(rng, SIDEWALK), texture(rng, SIDEWALK))
            c.polygons(walk, [self.ground_quad(curb, outer, 0, FAR_Z)])
            if s.verge[i] > 0:
                grass = c.part(c.shared_segment(TERRAIN), pick(rng, TERRAIN), texture(rng, TERRAIN))
                c.polygons(grass, [self.ground_quad(outer, outer + side * s.verge[i], 0, FAR_Z)])

    def _markings(self, road: int) -> None:
        c, rng = self.canvas, self.rng
        paint = c.part(road, jitter(rng, (0.85, 0.85, 0.80), 0.1), (0.05, 0.05))
        dashes = []
        for x_line in self.street.lines:
            for z in np.arange(rng.uniform(0, 9) + self.min_z, 90.0, 9.0):
                dashes.append(self.ground_quad(x_line - 0.08, x_line + 0.08, z, z + 3.0))
        if rng.random() < 0.3:
            z = rng.uniform(8, 25)
            for x in np.arange(-self.street.road_left, self.street.road_right, 1.0):
                dashes.append(self.ground_quad(x, x + 0.5, z, z + 3.0))
        if dashes:
            c.polygons(paint, dashes)

    # --------------------------------------------------------------- facades
    def _facades(self, side: int) -> None:
        rng = self.rng
        base_x = side * self.street.facade_x(side)
        z = self.min_z - rng.uniform(0, 10)
        blocks = []
        while z < 220:
            length = rng.uniform(6, 30) * (1 + max(z, 0) / 60)
            if z + length > self.min_z:
                blocks.append((z, z + length))
            z += length
        kinds = ("building", "building", "building", "vegetation", "wall", "fence", "gap")
        for z0, z1 in reversed(blocks):
            kind = kinds[rng.integers(len(kinds))]
            if kind == "building":
                self._building(base_x + side * rng.uniform(0, 2.5), z0, z1)
            elif kind == "vegetation":
                self._hedge(base_x + side * rng.uniform(0, 2), z0, z1, rng.uniform(2, 10))
            elif kind in ("wall", "fence"):
                if rng.random() < 0.6:
                    self._building(base_x + side * rng.uniform(2, 5), z0, z1)
                self._low_wall(WALL if kind == "wall" else FENCE, base_x, z0, z1)

    def _building(self, x: float, z0: float, z1: float) -> None:
        c, rng = self.canvas, self.rng
        segment = c.shared_segment(BUILDING)
        height = rng.uniform(6, 28)
        c.polygons(c.part(segment, pick(rng, BUILDING), texture(rng, BUILDING)),
                   [self.wall_quad(x, z0, z1, 0, height)])
        glass = c.part(segment, jitter(rng, DARK_GLASS, 0.3), (0.03, 0.05))
        step_z, step_y = rng.uniform(2.5, 4.0), rng.uniform(2.8, 3.4)
        win_z, win_y = step_z * rng.uniform(0.35, 0.6), step_y * rng.uniform(0.35, 0.55)
        zs = np.arange(max(z0, self.min_z) + 0.5, z1 - win_z, step_z)
        zs = zs[self.camera.focal / zs * win_y >= 2.0]  # windows at least 2 px tall
        ys = np.arange(1.0, height - win_y - 0.5, step_y)
        if len(zs) and len(ys):
            wz, wy = (a.ravel() for a in np.meshgrid(zs, ys))
            corners = np.stack([np.stack([np.full_like(wz, x), wy + dy, wz + dz], axis=1)
                                for dz, dy in ((0, 0), (win_z, 0), (win_z, win_y), (0, win_y))],
                               axis=1)
            c.polygons(glass, self.camera.project(corners))

    def _hedge(self, x: float, z0: float, z1: float, height: float) -> None:
        c, rng = self.canvas, self.rng
        z0 = max(z0, self.min_z)
        zs = np.linspace(z0, z1, 12)
        tops = height * rng.uniform(0.7, 1.3, len(zs))
        pts = [[x, 0, z0]] + [[x, t, z] for z, t in zip(zs, tops)] + [[x, 0, z1]]
        part = c.part(c.shared_segment(VEGETATION), pick(rng, VEGETATION),
                      texture(rng, VEGETATION))
        c.polygons(part, [self.camera.project(np.array(pts))])

    def _low_wall(self, category_id: int, x: float, z0: float, z1: float) -> None:
        c, rng = self.canvas, self.rng
        segment = c.shared_segment(category_id)
        height = rng.uniform(1.0, 2.8)
        c.polygons(c.part(segment, pick(rng, category_id), texture(rng, category_id)),
                   [self.wall_quad(x, z0, z1, 0, height)])
        if category_id == FENCE:
            posts = [self.wall_quad(x, z, z + 0.15, 0, height)
                     for z in np.arange(max(z0, self.min_z), z1, rng.uniform(1.5, 3.0))]
            c.polygons(c.part(segment, pick(rng, FENCE) * 0.6), posts)

    # ------------------------------------------------------ street furniture
    def _street_furniture(self) -> None:
        rng = self.rng
        for side in (-1, 1):
            curb = self.street.curb_x(side)
            for z in np.cumsum(rng.uniform(8, 30, 6)) + self.min_z:
                x = curb + side * rng.uniform(0.3, 0.7)
                kind = rng.random()
                if kind < 0.25:
                    self.objects.append((z, lambda x=x, z=z: self._tree(x, z)))
                else:
                    self.objects.append((z, lambda x=x, z=z, s=side: self._pole(x, z, s)))

    def _pole(self, x: float, z: float, side: int) -> None:
        c, rng = self.canvas, self.rng
        segment = c.shared_segment(POLE)
        height, width = rng.uniform(3.0, 9.0), rng.uniform(0.1, 0.3)
        color = pick(rng, POLE)
        c.polygons(c.part(segment, color), [self.front_quad(x - width / 2, x + width / 2, z, 0,
                                                            height)])
        attachment = rng.random()
        if attachment < 0.45:
            self._sign(x, z - 0.05, rng.uniform(1.8, min(3.0, height)))
        elif attachment < 0.75:
            if rng.random() < 0.4:
                reach = -side * rng.uniform(2.0, 5.0)
                arm = self.front_quad(min(x, x + reach), max(x, x + reach), z, height - 0.25,
                                      height)
                c.polygons(c.part(segment, color), [arm])
                self._traffic_light(x + reach * 0.8, z - 0.05, height - 0.25 - 1.0)
            else:
                self._traffic_light(x, z - 0.05, height - 1.0)

    def _sign(self, x: float, z: float, y: float) -> None:
        c, rng, cam = self.canvas, self.rng, self.camera
        segment = c.shared_segment(TRAFFIC_SIGN)
        centre = cam.project(np.array([[x, y, z]]))[0]
        radius = rng.uniform(0.3, 0.45) * cam.pixels_per_metre(z)
        rim = c.part(segment, pick(rng, TRAFFIC_SIGN))
        inner = c.part(segment, pick(rng, TRAFFIC_SIGN))
        shape = rng.integers(3)
        if shape == 0:
            c.circle(rim, centre, radius)
            c.circle(inner, centre, radius * 0.75)
        else:
            n = 3 if shape == 1 else 4
            angles = np.pi / 2 + np.arange(n) * 2 * np.pi / n + (np.pi / 4 if n == 4 else 0)
            outline = np.stack([np.cos(angles), -np.sin(angles)], axis=1)
            c.polygons(rim, [centre + radius * outline])
            c.polygons(inner, [centre + 0.7 * radius * outline])

    def _traffic_light(self, x: float, z: float, y: float) -> None:
        c, rng, cam = self.canvas, self.rng, self.camera
        segment = c.shared_segment(TRAFFIC_LIGHT)
        width, height = rng.uniform(0.3, 0.4), rng.uniform(0.8, 1.1)
        c.polygons(c.part(segment, pick(rng, TRAFFIC_LIGHT)),
                   [self.front_quad(x - width / 2, x + width / 2, z, y, y + height)])
        scale = cam.pixels_per_metre(z)
        lit = rng.integers(3)
        for i, color in enumerate([(0.9, 0.1, 0.1), (0.9, 0.7, 0.1), (0.1, 0.8, 0.3)]):
            centre = cam.project(np.array([[x, y + height * (0.8 - 0.3 * i), z - 0.01]]))[0]
            lamp = jitter(rng, color) * (1.0 if i == lit else 0.35)
            c.circle(c.part(segment, lamp), centre, width * 0.3 * scale)

    def _tree(self, x: float, z: float) -> None:
        c, rng, cam = self.canvas, self.rng, self.camera
        segment = c.shared_segment(VEGETATION)
        trunk_h, trunk_w = rng.uniform(2.0, 3.5), rng.uniform(0.2, 0.4)
        c.polygons(c.part(segment, jitter(rng, (0.30, 0.22, 0.15))),
                   [self.front_quad(x - trunk_w / 2, x + trunk_w / 2, z, 0, trunk_h + 0.5)])
        leaves = c.part(segment, pick(rng, VEGETATION), texture(rng, VEGETATION))
        scale = cam.pixels_per_metre(z)
        for _ in range(int(rng.integers(3, 7))):
            centre = cam.project(np.array([[x + rng.uniform(-1.5, 1.5),
                                            trunk_h + rng.uniform(0.5, 3.0), z]]))[0]
            c.circle(leaves, centre, rng.uniform(1.0, 2.2) * scale)

    # -------------------------------------------------------------- vehicles
    def _traffic(self) -> None:
        rng, s = self.rng, self.street
        lanes = [0.0] + s.lanes
        for lane in lanes:
            z = self.min_z + rng.uniform(2, 15)
            while z < 120:
                self._add_vehicle(lane + rng.uniform(-0.4, 0.4), z)
                z += rng.uniform(8, 40) * (1 + z / 40)
        for side in (-1, 1):
            parked = s.curb_x(side) - side * 1.1
            z = self.min_z + rng.uniform(0, 10)
            while z < 80 and rng.random() < 0.8:
                if rng.random() < 0.15:
                    self._add_crowd_of_cars(parked, z)
                    z += 20
                else:
                    self._add_box_vehicle(CAR, parked, z, length=rng.uniform(3.8, 4.8),
                                          width=rng.uniform(1.6, 1.9), height=1.5)
                    z += rng.uniform(5, 9)
        if rng.random() < 0.15:
            x = rng.choice(lanes)
            self._add_box_vehicle(TRAIN, x, self.min_z + rng.uniform(10, 40),
                                  length=rng.uniform(20, 40), width=2.6, height=3.4)

    def _add_vehicle(self, x: float, z: float) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.62:
            self._add_box_vehicle(CAR, x, z, length=rng.uniform(3.8, 4.8),
                                  width=rng.uniform(1.6, 1.9), height=rng.uniform(1.35, 1.6))
        elif kind < 0.74:
            self._add_box_vehicle(TRUCK, x, z, length=rng.uniform(6, 9), width=2.4,
                                  height=rng.uniform(2.8, 3.8))
        elif kind < 0.84:
            self._add_box_vehicle(BUS, x, z, length=rng.uniform(10, 13), width=2.5,
                                  height=rng.uniform(3.0, 3.4))
        else:
            bike = MOTORCYCLE if rng.random() < 0.5 else BICYCLE
            self.objects.append((z, lambda: self._rider(bike, x, z)))

    def _add_box_vehicle(self, category_id: int, x: float, z: float, length: float,
                         width: float, height: float) -> None:
        def draw() -> None:
            segment = self.canvas.instance_segment(category_id)
            self._box_vehicle(segment, category_id, x, z, length, width, height)
        self.objects.append((z, draw))

    def _add_crowd_of_cars(self, x: float, z: float) -> None:
        def draw() -> None:
            segment = self.canvas.shared_segment(CAR)
            for i in reversed(range(int(self.rng.integers(2, 5)))):
                self._box_vehicle(segment, CAR, x, z + 4.5 * i, 4.3, 1.8, 1.5)
        self.objects.append((z, draw))

    def _box_vehicle(self, segment: int, category_id: int, x: float, z: float, length: float,
                     width: float, height: float) -> None:
        """Body box (+ cabin for cars), windows and tyres of one vehicle, ``z`` = rear."""
        rng, c = self.rng, self.canvas
        if z < self.min_z * 1.2:
            return
        color = pick(rng, category_id)
        x0, x1 = x - width / 2, x + width / 2
        body_top = 0.55 * height if category_id == CAR else height
        self._box(segment, color, x0, x1, 0.25, body_top, z, z + length)
        if category_id == CAR:
            self._box(segment, color * 0.95, x0 + 0.12, x1 - 0.12, body_top, height,
                      z + 0.8, z + length - 1.0)
            glass = c.part(segment, jitter(rng, DARK_GLASS, 0.3))
            c.polygons(glass, [self.front_quad(x0 + 0.25, x1 - 0.25, z + 0.8, body_top + 0.05,
                                               height - 0.08)])
        else:
            glass = c.part(segment, jitter(rng, DARK_GLASS, 0.3))
            c.polygons(glass, [self.front_quad(x0 + 0.2, x1 - 0.2, z,
                                               height * 0.55, height * 0.9)])
        tyre = c.part(segment, jitter(rng, TYRE, 0.3))
        c.polygons(tyre, [self.front_quad(x0 + 0.05, x0 + 0.35, z + 0.5, 0, 0.3),
                          self.front_quad(x1 - 0.35, x1 - 0.05, z + 0.5, 0, 0.3)])
        lamps = c.part(segment, jitter(rng, (0.8, 0.1, 0.1), 0.2))
        c.polygons(lamps, [self.front_quad(x0 + 0.05, x0 + 0.3, z - 0.01, 0.7, 0.85),
                           self.front_quad(x1 - 0.3, x1 - 0.05, z - 0.01, 0.7, 0.85)])

    def _box(self, segment: int, color, x0: float, x1: float, y0: float, y1: float,
             z0: float, z1: float) -> None:
        """Visible faces of an axis-aligned box: back, the side facing the camera, top."""
        c, cam = self.canvas, self.camera
        faces = [(self.front_quad(x0, x1, z0, y0, y1), 1.0)]
        if x1 < 0:
            faces.append((self.wall_quad(x1, z0, z1, y0, y1), 0.8))
        elif x0 > 0:
            faces.append((self.wall_quad(x0, z0, z1, y0, y1), 0.8))
        if y1 < cam.height:
            top = cam.project(np.array([[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]]))
            faces.append((top, 1.1))
        for polygon, shade in faces:
            c.polygons(c.part(segment, np.asarray(color) * shade), [polygon])

    # -------------------------------------------------------------- people
    def _pedestrians(self) -> None:
        rng, s = self.rng, self.street
        for _ in range(int(rng.integers(2, 12))):
            side = -1 if rng.random() < 0.5 else 1
            i = 0 if side < 0 else 1
            x = side * (abs(s.curb_x(side)) + rng.uniform(0.3, s.sidewalk[i] - 0.3))
            z = self.min_z + rng.uniform(1, 45)
            self.objects.append((z, lambda x=x, z=z: self._person_instance(x, z)))
        if rng.random() < 0.2:
            x, z = rng.uniform(-s.road_left, s.road_right), self.min_z + rng.uniform(3, 25)
            self.objects.append((z, lambda x=x, z=z: self._person_instance(x, z)))
        if rng.random() < 0.4:
            self._add_crowd_of_people()
        for _ in range(int(rng.integers(0, 3))):
            side = -1 if rng.random() < 0.5 else 1
            x, z = side * (abs(s.curb_x(side)) + 0.5), self.min_z + rng.uniform(1, 30)
            self.objects.append((z, lambda x=x, z=z: self._parked_bike(x, z)))

    def _add_crowd_of_people(self) -> None:
        rng, s = self.rng, self.street
        side = -1 if rng.random() < 0.5 else 1
        x0 = side * (abs(s.curb_x(side)) + 0.6)
        z0 = self.min_z + rng.uniform(3, 30)
        members = [(x0 + side * rng.uniform(0, 2.5), z0 + rng.uniform(0, 2.5))
                   for _ in range(int(rng.integers(4, 11)))]

        def draw() -> None:
            segment = self.canvas.shared_segment(PERSON)
            for x, z in sorted(members, key=lambda m: -m[1]):
                self._person(segment, x, z)
        self.objects.append((z0, draw))

    def _person_instance(self, x: float, z: float) -> None:
        self._person(self.canvas.instance_segment(PERSON), x, z)

    def _person(self, segment: int, x: float, z: float) -> None:
        """Frontal walking figure with its feet at ground point (x, z)."""
        c, rng, cam = self.canvas, self.rng, self.camera
        foot = cam.project(np.array([[x, 0.0, z]]))[0]
        h = rng.uniform(1.5, 1.95) * cam.pixels_per_metre(z)
        if h < 4:
            return
        stride, skin = rng.uniform(0.0, 0.12) * h, SKIN[rng.integers(len(SKIN))]
        legs = c.part(segment, _any_color(rng) * 0.7)
        hip = foot + (0, -0.48 * h)
        for dx in (-1, 1):
            c.line(legs, hip + (dx * 0.05 * h, 0), foot + (dx * (0.05 * h + stride / 2), 0),
                   0.075 * h)
        torso = c.part(segment, _any_color(rng))
        half = rng.uniform(0.1, 0.14) * h
        c.polygons(torso, [np.array([hip + (-half, 0), hip + (half, 0),
                                     hip + (half * 1.1, -0.34 * h),
                                     hip + (-half * 1.1, -0.34 * h)])])
        for dx in (-1, 1):
            shoulder = hip + (dx * half * 1.15, -0.32 * h)
            c.line(torso, shoulder, shoulder + (dx * 0.04 * h, 0.3 * h), 0.05 * h)
        head = c.part(segment, jitter(rng, skin, 0.1))
        c.circle(head, foot + (0, -0.905 * h), 0.065 * h)

    def _parked_bike(self, x: float, z: float) -> None:
        category_id = BICYCLE if self.rng.random() < 0.7 else MOTORCYCLE
        facing = 1 if self.rng.random() < 0.5 else -1
        self._bike(self.canvas.instance_segment(category_id), category_id, x, z, facing)

    def _rider(self, category_id: int, x: float, z: float) -> None:
        c, rng, cam = self.canvas, self.rng, self.camera
        facing = 1 if rng.random() < 0.5 else -1
        self._bike(c.instance_segment(category_id), category_id, x, z, facing)
        s = cam.pixels_per_metre(z)
        ground = cam.project(np.array([[x, 0.0, z]]))[0]
        segment = c.instance_segment(RIDER)

        def at(u: float, v: float) -> np.ndarray:
            return ground + (facing * u * s, -v * s)
        body = c.part(segment, _any_color(rng))
        c.line(body, at(-0.15, 0.95), at(0.1, 1.5), 0.22 * s)
        c.line(body, at(0.1, 1.45), at(0.45, 1.05), 0.07 * s)
        legs = c.part(segment, _any_color(rng) * 0.7)
        c.line(legs, at(-0.15, 0.95), at(0.15, 0.7), 0.11 * s)
        c.line(legs, at(0.15, 0.7), at(0.05, 0.3), 0.09 * s)
        head_color = _any_color(rng) if category_id == MOTORCYCLE else SKIN[rng.integers(len(SKIN))]
        c.circle(c.part(segment, head_color), at(0.14, 1.68), 0.12 * s)

    def _bike(self, segment: int, category_id: int, x: float, z: float, facing: int) -> None:
        """Side view bicycle or motorcycle standing at ground point (x, z)."""
        c, rng, cam = self.canvas, self.rng, self.camera
        s = cam.pixels_per_metre(z)
        ground = cam.project(np.array([[x, 0.0, z]]))[0]

        def at(u: float, v: float) -> np.ndarray:
            return ground + (facing * u * s, -v * s)
        motor = category_id == MOTORCYCLE
        radius = 0.32 if motor else 0.34
        tyre = c.part(segment, jitter(rng, TYRE, 0.3))
        for u in (-0.55, 0.55):
            c.circle(tyre, at(u, radius), radius * s, -1 if motor else 0.06 * s)
        frame = c.part(segment, pick(rng, category_id))
        if motor:
            c.polygons(frame, [np.array([at(-0.6, 0.45), at(0.45, 0.45), at(0.5, 0.85),
                                         at(-0.1, 0.95), at(-0.65, 0.8)])])
            c.line(frame, at(0.45, 0.6), at(0.35, 1.1), 0.06 * s)
        else:
            width = max(0.045 * s, 1.0)
            for start, end in [((-0.55, 0.34), (0.0, 0.32)), ((0.0, 0.32), (-0.15, 0.9)),
                               ((-0.55, 0.34), (-0.15, 0.9)), ((-0.15, 0.9), (0.4, 0.92)),
                               ((0.0, 0.32), (0.4, 0.92)), ((0.4, 0.92), (0.55, 0.34)),
                               ((0.4, 0.92), (0.38, 1.05))]:
                c.line(frame, at(*start), at(*end), width)

    # ----------------------------------------------------------------- void
    def _clutter(self) -> None:
        """Unlabeled objects (bins, boxes, a patch on the sidewalk): void pixels."""
        rng, s = self.rng, self.street
        for _ in range(int(rng.integers(0, 4))):
            side = -1 if rng.random() < 0.5 else 1
            x = side * (abs(s.curb_x(side)) + rng.uniform(0.5, 2.0))
            z = self.min_z + rng.uniform(2, 35)
            size = rng.uniform(0.4, 1.2)

            def draw(x=x, z=z, size=size) -> None:
                part = self.canvas.part(VOID_ID, _any_color(self.rng))
                self.canvas.polygons(part, [self.front_quad(x - size / 2, x + size / 2, z, 0,
                                                            size)])
            self.objects.append((z, draw))

    def _ego_vehicle(self) -> None:
        c, rng = self.canvas, self.rng
        if rng.random() < 0.7:
            hood = c.part(VOID_ID, pick(rng, CAR))
            depth = c.height * rng.uniform(0.05, 0.14)
            cv2.ellipse(c.parts, (int(c.width / 2 * ONE), int((c.height + depth) * ONE)),
                        (int(c.width * rng.uniform(0.55, 0.8) * ONE), int(2 * depth * ONE)),
                        0, 180, 360, hood, -1, cv2.LINE_8, SHIFT)
        if rng.random() < 0.15:
            border = c.part(VOID_ID, (0.0, 0.0, 0.0), (0.0, 0.0))
            margin = int(rng.integers(2, 6))
            c.parts[:, :margin] = border
            c.parts[:, -margin:] = border


def _any_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, 3)


def segment_ids(segments: list[tuple[int, bool]]) -> np.ndarray:
    """Cityscapes panoptic id per canvas segment, ``(S,)`` int32.

    Stuff and crowd: the category id; void: 0; thing instance ``k`` (0-based per class,
    in drawing order, as Cityscapes' ``json2instanceImg`` numbers them):
    ``category_id * 1000 + k``.
    """
    counters: dict[int, int] = {}
    ids = np.zeros(len(segments), dtype=np.int32)
    for s, (category_id, instance) in enumerate(segments):
        if instance:
            k = counters.get(category_id, 0)
            if k >= LABEL_DIVISOR:
                raise RuntimeError(f"more than {LABEL_DIVISOR} instances of {category_id}")
            counters[category_id] = k + 1
            ids[s] = category_id * LABEL_DIVISOR + k
        else:
            ids[s] = category_id
    return ids
