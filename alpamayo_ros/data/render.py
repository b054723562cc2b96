"""A fast polygon renderer for the 2.5D world: perspective, occlusion, lighting.

The scene is a list of world-space quads (4 vertices, z up) with colours and a layer:
0 ground (grass, road, shoulders, junction surfaces), 1 paint on the ground (lane lines,
stop lines, zebra stripes), 2 solids (vehicles, people, poles, signs, trees, buildings,
traffic-light heads across the junction whose lit lamp shows the current colour;
vehicles carry rear lamps, dim when off and larger and bright red when braking, and
steady amber indicators at the front and rear corners and on the flank of the side they
signal). Per camera, all vertices are transformed at once with numpy, quads behind the
camera or outside the frustum are culled, solid back faces are culled, quads crossing the
near plane are clipped, and the rest are filled with ``cv2.fillConvexPoly`` in painter's
order (layer, then far to near; solids are ordered per object so each box is drawn
whole). Sky is a vertical gradient. Faces are shaded by a per-scene sun direction and
brightness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from alpamayo_ros.data.cameras import CameraConfig
from alpamayo_ros.data.scenarios import AgentSnapshot, Episode, Frame
from alpamayo_ros.data.world import COLOURS, Road

NEAR_M = 0.15
# Traffic-signal heads are drawn 2.5x a real 12-inch (0.3 m lamp) three-lamp head so our
# 160-px cameras resolve the lit lamp where the expert reacts to it: about 3 px at 60 m in
# the 30-degree tele camera (a real head's lamp there is 1.3 px, below what session 11's
# policy could see: docs/RESULTS.md). An observability choice, as AR1's 1080p cameras see
# real lamps; the lamps keep their real order, colours and pole position.
SIGNAL_LAMP_RADIUS_M = 0.33
SIGNAL_LAMP_PITCH_M = 0.85  # lamp centre to lamp centre
SIGNAL_HEAD_WIDTH_M = 1.0
SIGNAL_HEAD_DEPTH_M = 0.45
SIGNAL_HEAD_HEIGHT_M = 3 * SIGNAL_LAMP_PITCH_M + 0.1
SIGNAL_HEAD_BOTTOM_M = 3.7
# Heads hang across the junction over the ego's lanes, this far past the stop line straight
# along the approach: MUTCD (2003) Section 4D.15 / Figure 4D-2 puts primary signal faces
# 12 to 45 m (40 to 150 ft) beyond the stop line. A head 1 m past the line (renderer
# version 2) left every camera before the line, so a car waiting at red, or going on
# green, could not see the light its reasoning cites.
SIGNAL_BEYOND_STOP_LINE_M = 30.0
FAR_M = 220.0
SUBPIXEL_BITS = 3
SURFACE_LAYER = 0.5  # coloured road surfaces: over the asphalt (0), under the paint (1)
LAMP_COLOURS = {"red": (255, 40, 30), "yellow": (255, 200, 0), "green": (40, 255, 90)}
# Signal counterfactuals (DatasetSpec.signal_counterfactuals): the same frames drawn with
# every signal's red and green exchanged, so the lamp is the only cue to its colour.
SIGNAL_COLOUR_SWAP = {"red": "green", "green": "red", "yellow": "yellow"}
# Vehicle lamps. Lit ones (any channel >= 250) are drawn unshaded, like the signal lamps.
BRAKE_ON = (255, 30, 20)
BRAKE_OFF = (95, 18, 18)
INDICATOR_ON = (255, 165, 0)


@dataclass
class QuadBatch:
    """Quads with colours, layers and object ids for ordering."""

    verts: np.ndarray  # (N, 4, 3) float64 world
    colours: np.ndarray  # (N, 3) float32 RGB before shading
    layers: np.ndarray  # (N,) -1 grass, 0 ground, 0.5 surface patches, 1 paint, 2 solids
    objects: np.ndarray  # (N,) int, -1 for ground/paint
    normals: np.ndarray  # (N, 3) (zero for ground: never culled)

    @staticmethod
    def concat(batches: list[QuadBatch]) -> QuadBatch:
        """Join batches."""
        batches = [b for b in batches if len(b.verts)]
        if not batches:
            return QuadBatch(np.zeros((0, 4, 3)), np.zeros((0, 3), np.float32),
                             np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3)))
        return QuadBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in
                           ("verts", "colours", "layers", "objects", "normals")))


class _Builder:
    def __init__(self) -> None:
        self.verts: list = []
        self.colours: list = []
        self.layers: list = []
        self.objects: list = []
        self.normals: list = []
        self.next_object = 0

    def quad(self, v: np.ndarray, colour, layer: float, obj: int = -1, normal=(0, 0, 0)
             ) -> None:
        self.verts.append(v)
        self.colours.append(colour)
        self.layers.append(layer)
        self.objects.append(obj)
        self.normals.append(normal)

    def box(self, x: float, y: float, z0: float, heading: float, length: float, width: float,
            height: float, colour, top_colour=None) -> None:
        obj = self.next_object
        self.next_object += 1
        c, s = math.cos(heading), math.sin(heading)
        fx, fy, lx, ly = c * length / 2, s * length / 2, -s * width / 2, c * width / 2
        base = np.array([[x + fx + lx, y + fy + ly], [x - fx + lx, y - fy + ly],
                         [x - fx - lx, y - fy - ly], [x + fx - lx, y + fy - ly]])
        lo = np.column_stack([base, np.full(4, z0)])
        hi = np.column_stack([base, np.full(4, z0 + height)])
        sides = [((0, 1), (lx, ly)), ((1, 2), (-fx, -fy)), ((2, 3), (-lx, -ly)),
                 ((3, 0), (fx, fy))]
        for (i, j), (nx, ny) in sides:
            n = np.array([nx, ny, 0.0])
            n /= max(np.linalg.norm(n), 1e-9)
            self.quad(np.array([lo[i], lo[j], hi[j], hi[i]]), colour, 2, obj, n)
        self.quad(hi[::-1].copy(), top_colour if top_colour is not None else colour, 2, obj,
                  (0.0, 0.0, 1.0))

    def batch(self) -> QuadBatch:
        if not self.verts:
            return QuadBatch.concat([])
        return QuadBatch(np.array(self.verts, float), np.array(self.colours, np.float32),
                         np.array(self.layers), np.array(self.objects),
                         np.array(self.normals, float))


def signal_pose(road: Road, stop_line_s: float, d: float) -> tuple[float, float, float]:
    """World (x, y, heading) of a signal part at lateral offset ``d`` of the approach.

    :data:`SIGNAL_BEYOND_STOP_LINE_M` past the stop line along the approach's heading at the
    line (straight on across the junction, also where the road bends after it).
    """
    x, y, h = (float(v) for v in road.to_world(stop_line_s, d))
    return (x + SIGNAL_BEYOND_STOP_LINE_M * math.cos(h),
            y + SIGNAL_BEYOND_STOP_LINE_M * math.sin(h), h)


def _strip(road, s0: np.ndarray, s1: np.ndarray, d0: float, d1: float, z: float) -> np.ndarray:
    """Quads (N, 4, 3) covering [s0, s1] x [d0, d1] of the road at height z."""
    pts = []
    for s, d in ((s0, d0), (s1, d0), (s1, d1), (s0, d1)):
        x, y, _ = road.to_world(s, np.full_like(s, d))
        pts.append(np.stack([x, y, np.full_like(x, z)], axis=1))
    return np.stack(pts, axis=1)


class SceneRenderer:
    """Renders the frames of one episode from any camera."""

    def __init__(self, episode: Episode, seed: int = 0, swap_signal_colours: bool = False
                 ) -> None:
        """Prepare one episode's static scene.

        ``swap_signal_colours``: draw every signal's red lamp lit as green and the green as
        red (:data:`SIGNAL_COLOUR_SWAP`); the rest of the frame is unchanged.
        """
        self.episode = episode
        self.swap_signal_colours = swap_signal_colours
        world = episode.world
        self.road = world.road
        self.app = dict(world.appearance or {})
        el = self.app.get("sun_elevation_rad", 0.8)
        az = self.app.get("sun_azimuth_rad", 0.5)
        self.sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az),
                             math.sin(el)])
        self.brightness = float(self.app.get("brightness", 1.0))
        self.sky = np.array(self.app.get("sky", [170, 195, 230]), np.float32)
        self.static = self._static_scene()
        self._sky_cache: dict = {}
        self._ids: dict[str, int] = {}

    # ------------------------------------------------------------------ scene
    def _static_scene(self) -> QuadBatch:
        world, road, cfg = self.episode.world, self.road, self.road.config
        b = _Builder()
        asphalt = float(self.app.get("asphalt", 85))
        road_c = (asphalt, asphalt, asphalt + 4)
        shoulder_c = (asphalt + 25, asphalt + 25, asphalt + 22)
        w = cfg.lane_width_m
        right = -0.5 * w
        left = (cfg.num_lanes + cfg.oncoming_lanes - 0.5) * w
        step = 4.0
        s0 = np.arange(-60.0, road.length_m + 60.0, step)
        s1 = s0 + step
        layers = [(_strip(road, s0, s1, right, left, 0.0), road_c, 0)]
        if cfg.shoulder_m > 0:
            layers.append((_strip(road, s0, s1, right - cfg.shoulder_m, right, 0.0),
                           shoulder_c, 0))
        for sp in world.lane_spans:
            m = (s1 > sp.s_start) & (s0 < sp.s_end)
            layers.append((_strip(road, np.maximum(s0[m], sp.s_start),
                                  np.minimum(s1[m], sp.s_end), (sp.lane - 0.5) * w,
                                  (sp.lane + 0.5) * w, 0.001), road_c, 0))
        for inter in world.intersections:
            x, y, h = road.to_world(inter.s, 0.5 * (left + right))
            c, s = math.cos(h), math.sin(h)
            hw, hl = inter.width_m / 2, 60.0
            quad = np.array([[x + c * hw - s * hl, y + s * hw + c * hl, 0.002],
                             [x - c * hw - s * hl, y - s * hw + c * hl, 0.002],
                             [x - c * hw + s * hl, y - s * hw - c * hl, 0.002],
                             [x + c * hw + s * hl, y + s * hw - c * hl, 0.002]])
            layers.append((quad[None], road_c, 0))
        for verts, colour, layer in layers:
            for v in verts:
                b.quad(v, colour, layer)
        # Paint: lane lines, edges, stop lines, zebra crossings.
        white, yellow = (235, 235, 230), (230, 190, 40)
        junction = [(i.s - i.width_m / 2, i.s + i.width_m / 2) for i in world.intersections]

        def paint(d: float, colour, dashed: bool, width: float = 0.15,
                  s_lo: float = -60.0, s_hi: float = road.length_m + 60.0) -> None:
            period, dash = (9.0, 3.0) if dashed else (4.0, 4.0)
            starts = np.arange(s_lo, s_hi, period)
            ends = np.minimum(starts + dash, s_hi)
            keep = np.ones(len(starts), bool)
            for lo, hi in junction:
                keep &= (ends < lo) | (starts > hi)
            for v in _strip(road, starts[keep], ends[keep], d - width / 2, d + width / 2, 0.01):
                b.quad(v, colour, 1)

        paint(right, white, False)
        paint(left, white, False)
        for lane in range(cfg.num_lanes + cfg.oncoming_lanes - 1):
            d = (lane + 0.5) * w
            if lane == cfg.num_lanes - 1 and cfg.oncoming_lanes:
                paint(d - 0.12, yellow, False, 0.12)
                paint(d + 0.12, yellow, False, 0.12)
            else:
                paint(d, white, True)
        for sp in world.lane_spans:
            paint((sp.lane - 0.5) * w, white, False, s_lo=sp.s_start, s_hi=sp.s_end)
        stops = [tl.stop_line_s for tl in world.lights] + [ss.stop_line_s for ss in
                                                            world.stop_signs]
        for s in stops:
            v = _strip(road, np.array([s - 0.25]), np.array([s + 0.25]), right,
                       (cfg.num_lanes - 0.5) * w, 0.012)
            b.quad(v[0], white, 1)
        for cw in world.crosswalks:
            d = np.arange(right + 0.3, left - 0.3, 1.0)
            for di in d:
                v = _strip(road, np.array([cw.s - cw.width_m / 2]),
                           np.array([cw.s + cw.width_m / 2]), di, di + 0.5, 0.012)
                b.quad(v[0], white, 1)
        # Road events the reasoning names: a speed bump is a yellow-and-black striped band
        # across the road, a school zone a red surface on the ego's lanes (with the yellow
        # sign its family puts up); curves show in the road, work zones in their cones.
        ego_left = (cfg.num_lanes - 0.5) * w
        for ev in world.events:
            if ev.kind == "speed_bump":
                mid = 0.5 * (ev.s_start + ev.s_end)
                for k, di in enumerate(np.arange(right, left, 0.6)):
                    v = _strip(road, np.array([mid - 0.6]), np.array([mid + 0.6]), di,
                               min(di + 0.6, left), 0.013)
                    b.quad(v[0], yellow if k % 2 == 0 else (35, 35, 35), 1)
            elif ev.kind == "school_zone":
                zs = np.arange(ev.s_start, ev.s_end, step)
                for v in _strip(road, zs, np.minimum(zs + step, ev.s_end), right, ego_left,
                                0.005):
                    b.quad(v, (150, 60, 55), SURFACE_LAYER)
        # Props.
        for p in world.props:
            x, y, h = road.to_world(p.s, p.d)
            x, y, h = float(x), float(y), float(h)
            if p.kind == "pole":
                b.box(x, y, 0.0, h, p.size_m, p.size_m, p.height_m, p.colour)
            elif p.kind == "sign":
                b.box(x, y, 0.0, h, 0.1, 0.1, p.height_m - 0.6, (120, 120, 125))
                b.box(x, y, p.height_m - 0.8, h, 0.08, p.size_m, 0.8, p.colour)
            elif p.kind == "tree":
                b.box(x, y, 0.0, h, 0.4, 0.4, p.height_m * 0.4, (90, 65, 40))
                b.box(x, y, p.height_m * 0.35, h + 0.4, p.size_m, p.size_m,
                      p.height_m * 0.65, p.colour)
            else:
                b.box(x, y, 0.0, h, p.size_m, p.size_m * 1.5, p.height_m, p.colour,
                      top_colour=(100, 100, 100))
        # Traffic-light poles and mast arms (heads are dynamic).
        for tl in world.lights:
            x, y, h = signal_pose(road, tl.stop_line_s, right - 1.0)
            mast_z = SIGNAL_HEAD_BOTTOM_M + SIGNAL_HEAD_HEIGHT_M - 0.3
            b.box(x, y, 0.0, h, 0.25, 0.25, mast_z + 0.2, (70, 70, 75))
            x2, y2, _ = signal_pose(road, tl.stop_line_s, 0.5 * w)
            mx, my = 0.5 * (float(x) + float(x2)), 0.5 * (float(y) + float(y2))
            b.box(mx, my, mast_z, float(h) + math.pi / 2, math.hypot(x2 - x, y2 - y) + 0.3,
                  0.15, 0.15, (70, 70, 75))
        self._n_static_objects = b.next_object
        return b.batch()

    def _dynamic_scene(self, frame: Frame) -> QuadBatch:
        b = _Builder()
        b.next_object = self._n_static_objects
        for a in frame.agents:
            self._agent(b, a, frame.time_s)
        w = self.road.config.lane_width_m
        for tl in self.episode.world.lights:
            state = frame.lights.get(tl.id, "red")
            if self.swap_signal_colours:
                state = SIGNAL_COLOUR_SWAP[state]
            x, y, h = signal_pose(self.road, tl.stop_line_s, 0.5 * w)
            b.box(x, y, SIGNAL_HEAD_BOTTOM_M, h, SIGNAL_HEAD_DEPTH_M, SIGNAL_HEAD_WIDTH_M,
                  SIGNAL_HEAD_HEIGHT_M, (25, 25, 25))
            head = b.next_object - 1  # lamps join the head object: drawn right after it
            # Lamps on the face toward oncoming ego traffic (the -s side).
            c, s = math.cos(h), math.sin(h)
            face_m = 0.5 * SIGNAL_HEAD_DEPTH_M + 0.01
            fx, fy = x - c * face_m, y - s * face_m
            for k, colour in enumerate(("red", "yellow", "green")):
                zc = SIGNAL_HEAD_BOTTOM_M + SIGNAL_HEAD_HEIGHT_M - SIGNAL_LAMP_PITCH_M * (k + 0.5)
                lit = state == colour
                col = LAMP_COLOURS[colour] if lit else tuple(int(v * 0.18) + 20 for v in
                                                              LAMP_COLOURS[colour])
                r = SIGNAL_LAMP_RADIUS_M
                quad = np.array([[fx - s * r, fy + c * r, zc - r],
                                 [fx + s * r, fy - c * r, zc - r],
                                 [fx + s * r, fy - c * r, zc + r],
                                 [fx - s * r, fy + c * r, zc + r]])
                b.quad(quad, col, 2, head, (-c, -s, 0.0))
        return b.batch()

    def _agent(self, b: _Builder, a: AgentSnapshot, t: float) -> None:
        col = COLOURS.get(a.colour, (150, 150, 150))
        if a.kind in ("car", "van", "truck", "bus", "ambulance"):
            lower = 0.55 if a.kind == "car" else 0.75
            b.box(a.x, a.y, 0.25, a.heading, a.length_m, a.width_m, a.height_m * lower - 0.25,
                  col)
            _lamps(b, a, b.next_object - 1, a.height_m * lower)
            # Wheels band / underbody.
            b.box(a.x, a.y, 0.0, a.heading, a.length_m * 0.9, a.width_m * 0.95, 0.3, (25, 25, 25))
            glass = (60, 75, 95)
            if a.kind == "car":
                c, s = math.cos(a.heading), math.sin(a.heading)
                b.box(a.x - 0.2 * c, a.y - 0.2 * s, a.height_m * lower, a.heading,
                      a.length_m * 0.5, a.width_m * 0.88, a.height_m * (1 - lower), glass,
                      top_colour=col)
            else:
                c, s = math.cos(a.heading), math.sin(a.heading)
                off = a.length_m / 2 - 0.05
                b.box(a.x + off * c, a.y + off * s, a.height_m * 0.45, a.heading, 0.12,
                      a.width_m * 0.9, a.height_m * 0.3, glass)
                b.box(a.x, a.y, a.height_m * lower, a.heading, a.length_m, a.width_m,
                      a.height_m * (1 - lower), col)
            if a.siren:
                flash = (230, 30, 30) if int(t * 4) % 2 == 0 else (40, 60, 230)
                b.box(a.x, a.y, a.height_m, a.heading, 0.5, a.width_m * 0.7, 0.2, flash)
        elif a.kind == "pedestrian":
            b.box(a.x, a.y, 0.0, a.heading, 0.3, 0.4, 0.85, (50, 50, 70))
            b.box(a.x, a.y, 0.85, a.heading, 0.3, 0.5, 0.65, col)
            b.box(a.x, a.y, 1.5, a.heading, 0.22, 0.22, 0.25, (225, 185, 150))
        elif a.kind == "cyclist":
            b.box(a.x, a.y, 0.0, a.heading, a.length_m, 0.12, 0.9, (40, 40, 40))
            b.box(a.x, a.y, 0.9, a.heading, 0.4, 0.45, 0.6, col)
            b.box(a.x, a.y, 1.5, a.heading, 0.25, 0.25, 0.25, (225, 185, 150))
        else:
            b.box(a.x, a.y, 0.0, a.heading, a.length_m, a.width_m, a.height_m,
                  (240, 120, 20) if a.kind == "cone" else col,
                  top_colour=(245, 245, 245) if a.kind == "cone" else None)

    # ------------------------------------------------------------------ rendering
    def _background(self, cam: CameraConfig) -> np.ndarray:
        key = (cam.width_px, cam.height_px)
        if key not in self._sky_cache:
            rows = np.linspace(0.0, 1.0, cam.height_px, dtype=np.float32)[:, None]
            top = self.sky * 0.8
            grad = top[None, :] * (1 - rows) + np.minimum(self.sky * 1.1, 255)[None, :] * rows
            img = np.repeat(grad[:, None, :], cam.width_px, axis=1)
            self._sky_cache[key] = np.clip(img * self.brightness, 0, 255).astype(np.uint8)
        return self._sky_cache[key].copy()

    def scene(self, index: int) -> tuple[QuadBatch, np.ndarray]:
        """Quads near the ego at frame ``index`` and their shaded colours."""
        frame = self.episode.frames[index]
        ex, ey = frame.ego.x, frame.ego.y
        st = self.static
        centre = st.verts[:, :, :2].mean(axis=1)
        near = np.hypot(centre[:, 0] - ex, centre[:, 1] - ey) < FAR_M
        static = QuadBatch(st.verts[near], st.colours[near], st.layers[near], st.objects[near],
                           st.normals[near])
        grass = np.array(self.app.get("grass", [80, 120, 60]), np.float32)
        r = 3000.0
        ground = QuadBatch(np.array([[[ex + r, ey + r, -0.01], [ex - r, ey + r, -0.01],
                                      [ex - r, ey - r, -0.01], [ex + r, ey - r, -0.01]]]),
                           grass[None], np.array([-1]), np.array([-1]), np.zeros((1, 3)))
        batch = QuadBatch.concat([ground, static, self._dynamic_scene(frame)])
        shade = np.ones(len(batch.verts), np.float32)
        solid = batch.layers == 2
        lamp = np.zeros(len(batch.verts), bool)
        shade[solid] = 0.55 + 0.45 * np.clip(batch.normals[solid] @ self.sun, 0.0, 1.0)
        # Lit lamps keep their colour regardless of the sun.
        bright = np.max(batch.colours, axis=1) >= 250
        lamp |= solid & bright
        shade[lamp] = 1.0 / max(self.brightness, 1e-3)
        colours = np.clip(batch.colours * shade[:, None] * self.brightness, 0, 255)
        return batch, colours

    def render(self, index: int, cameras: list[CameraConfig],
               scene: tuple[QuadBatch, np.ndarray] | None = None) -> list[np.ndarray]:
        """RGB images (H, W, 3) uint8 of frame ``index`` from each camera."""
        batch, colours = scene if scene is not None else self.scene(index)
        frame = self.episode.frames[index]
        return [self._render_camera(batch, colours, frame, cam) for cam in cameras]

    def _render_camera(self, batch: QuadBatch, colours: np.ndarray, frame: Frame,
                       cam: CameraConfig) -> np.ndarray:
        img = self._background(cam)
        ex, ey, eh = frame.ego.x, frame.ego.y, frame.ego.heading
        r_ce = cam.rotation_camera_to_ego()
        c, s = math.cos(eh), math.sin(eh)
        r_ew = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        r_cw = r_ew @ r_ce  # camera -> world
        pos = np.array([ex + c * cam.x_m - s * cam.y_m, ey + s * cam.x_m + c * cam.y_m, cam.z_m])
        v = (batch.verts - pos) @ r_cw  # (N, 4, 3) camera coordinates
        z = v[..., 2]
        keep = z.max(axis=1) > NEAR_M
        f = cam.focal_px
        half_w, half_h = cam.width_px / 2, cam.height_px / 2
        zc = np.maximum(z, NEAR_M)
        u = v[..., 0] / zc * f
        w = v[..., 1] / zc * f
        # Frustum: drop quads entirely to one side (only meaningful for points in front).
        front_all = z.min(axis=1) > NEAR_M
        off = ((u.max(1) < -half_w) | (u.min(1) > half_w) | (w.max(1) < -half_h)
               | (w.min(1) > half_h)) & front_all
        keep &= ~off
        solid = batch.layers == 2
        centre = batch.verts.mean(axis=1)
        facing = np.einsum("ij,ij->i", batch.normals, pos - centre) > 0
        keep &= ~solid | facing
        idx = np.nonzero(keep)[0]
        if not len(idx):
            return img
        depth = z[idx].mean(axis=1)
        obj = batch.objects[idx]
        # Objects sort by their nearest point's distance so each box is drawn whole.
        if np.any(obj >= 0):
            dist = np.linalg.norm(centre[idx] - pos, axis=1)
            obj_depth = {}
            for o, d in zip(obj[obj >= 0], dist[obj >= 0]):
                obj_depth[o] = min(obj_depth.get(o, np.inf), d)
            depth = np.where(obj >= 0, [obj_depth.get(o, 0.0) for o in obj], depth)
        order = idx[np.lexsort((-depth, batch.layers[idx]))]
        scale = float(1 << SUBPIXEL_BITS)
        # Pixel coordinates of every quad at once, in cv2's int32 fixed point (only
        # absurdly far-out vertices get clamped); quads that cross the near plane are
        # clipped one by one below.
        limit = 2.0e8 / scale
        fixed = (np.clip(np.stack([u + half_w, w + half_h], axis=-1), -limit, limit)
                 * scale).astype(np.int32)
        crossing = z.min(axis=1) <= NEAR_M
        rgb = colours.tolist()
        fill = cv2.fillConvexPoly
        for i in order.tolist():
            if crossing[i]:
                poly = _clip_near(v[i])
                if poly is None:
                    continue
                pts = np.stack([poly[:, 0] / poly[:, 2] * f + half_w,
                                poly[:, 1] / poly[:, 2] * f + half_h], axis=1)
                pts = (np.clip(pts, -limit, limit) * scale).astype(np.int32)
            else:
                pts = fixed[i]
            fill(img, pts, rgb[i], cv2.LINE_8, SUBPIXEL_BITS)
        return img


def _lamps(b: _Builder, a: AgentSnapshot, body: int, body_top_m: float) -> None:
    """Brake lamps and the lit turn indicator of vehicle ``a``, drawn with its body box.

    Lamps are quads 1 cm off the body's faces in the body's object, so they are drawn
    right after the face they sit on and culled with it. Sizes are chosen to stay visible
    at the default model input (160x96) from the front-tele camera 60 m away (a braking
    lamp pair covers most of the rear face, a blob even for the front-wide camera).
    """
    c, s = math.cos(a.heading), math.sin(a.heading)
    half_l, half_w = a.length_m / 2 + 0.01, a.width_m / 2

    def quad(x0: float, y0: float, x1: float, y1: float, z0: float, z1: float,
             colour, normal: tuple[float, float]) -> None:
        """A vertical quad from local (x0, y0) to (x1, y1), z0..z1 (local x fwd, y left)."""
        p0 = (a.x + x0 * c - y0 * s, a.y + x0 * s + y0 * c)
        p1 = (a.x + x1 * c - y1 * s, a.y + x1 * s + y1 * c)
        n = (normal[0] * c - normal[1] * s, normal[0] * s + normal[1] * c, 0.0)
        b.quad(np.array([[p0[0], p0[1], z0], [p1[0], p1[1], z0], [p1[0], p1[1], z1],
                         [p0[0], p0[1], z1]]), colour, 2, body, n)

    zc = 0.62 if body_top_m < 1.2 else 0.9  # lamp centre height
    outer = half_w - 0.24  # inner edge of the indicator at each corner
    if a.braking:
        lw, lh, colour = min(0.5, 0.28 * a.width_m), 0.34, BRAKE_ON
    else:
        lw, lh, colour = 0.3, 0.16, BRAKE_OFF
    z0, z1 = zc - lh / 2, min(zc + lh / 2, body_top_m - 0.02)
    for side in (1.0, -1.0):
        quad(-half_l, side * outer, -half_l, side * (outer - lw), z0, z1, colour, (-1.0, 0.0))
    if a.braking:  # high-mounted stop lamp at the top of the rear
        zt = a.height_m - 0.12
        xr = -half_l if body_top_m >= 1.2 else -(0.2 + a.length_m * 0.25 + 0.01)
        quad(xr, 0.3, xr, -0.3, zt - 0.08, zt, BRAKE_ON, (-1.0, 0.0))
    if a.indicator in ("left", "right"):
        side = 1.0 if a.indicator == "left" else -1.0
        zi0, zi1 = zc - 0.13, min(zc + 0.13, body_top_m - 0.02)
        y_in, y_out = side * (half_w - 0.22), side * (half_w - 0.01)
        quad(-half_l, y_out, -half_l, y_in, zi0, zi1, INDICATOR_ON, (-1.0, 0.0))  # rear
        quad(half_l, y_in, half_l, y_out, zi0, zi1, INDICATOR_ON, (1.0, 0.0))  # front
        y_side = side * (half_w + 0.01)
        for x0, x1 in ((half_l - 0.6, half_l - 0.1), (-half_l + 0.1, -half_l + 0.6)):
            quad(x0, y_side, x1, y_side, zi0, zi1, INDICATOR_ON, (0.0, side))  # flank


def _clip_near(poly: np.ndarray) -> np.ndarray | None:
    """Sutherland-Hodgman clip of a polygon (K, 3) in camera coordinates to z >= near."""
    out = []
    n = len(poly)
    for k in range(n):
        a, b = poly[k], poly[(k + 1) % n]
        ina, inb = a[2] >= NEAR_M, b[2] >= NEAR_M
        if ina:
            out.append(a)
        if ina != inb:
            t = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if len(out) >= 3 else None
