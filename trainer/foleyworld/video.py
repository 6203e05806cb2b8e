"""Frames of a FoleyWorld scene: every sound's visible cause, drawn at the instant it sounds.

Drawing is vectorised over all frames at once. Each shape takes per-frame parameter arrays (F,), is
evaluated as an anti-aliased signed distance only inside the union of its per-frame bounding boxes
(split into frame chunks when it moves, so a passing car costs what a parked one does), and is
blended into one uint8 canvas (F, H, W, 3). Lengths are fractions of ``S = min(H, W)`` times the
source's apparent size; ``x`` -1..1 maps across the width and ``y`` 0..1 down the height, so any
resolution and frame rate work.

Timing rule: a discrete event at time ``e`` is shown on frame ``round(e * fps)`` (the frame nearest
to it): the ball touches the slab, the clock hand jumps, the foot plants, the beak opens there.
Continuous motions (swings, parabolas) run on the true clock and pass through the event exactly.
Oscillations stay below ``MAX_VISIBLE_HZ * fps`` so that no motion aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainer.foleyworld.classes import CLASSES
from trainer.foleyworld.scene import Scene, Source, WorldConfig

MAX_CHUNK = 1 << 17  # pixels x frames per shape evaluation: temporaries stay in cache at any resolution
MAX_VISIBLE_HZ = 0.4  # cap on any oscillation, in cycles per frame (Nyquist is 0.5)
G_SCREEN = 11.0  # ball gravity, frame heights per s^2 (9.8 m/s^2 if the frame is 0.9 m tall)
MIN_PX = 0.6  # thinnest half-width of a line, pixels (thinner lines vanish under anti-aliasing)

WHITE = np.array([255.0, 255.0, 255.0], np.float32)
INK = np.array([30.0, 28.0, 32.0], np.float32)  # near-black for outlines, hands, wheels

Frames = slice | np.ndarray  # a selection of frames: a slice, or an index array for scattered frames
Cover = Callable[[Frames, np.ndarray, np.ndarray], np.ndarray]  # (frames, xs, ys) -> coverage (n, h, w)


def frame_times(cfg: WorldConfig) -> np.ndarray:
    """Time of every video frame, ``k / fps`` seconds, shape (F,)."""
    return np.arange(cfg.n_frames, dtype=np.float64) / cfg.fps


def hsv_rgb(h: np.ndarray | float, s: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """RGB in 0..255, float32, shape (..., 3), from hue (wraps), saturation and value in 0..1."""
    h, s, v = np.broadcast_arrays(
        np.mod(np.asarray(h, np.float64), 1.0) * 6.0, np.clip(s, 0.0, 1.0), np.clip(v, 0.0, 1.0)
    )
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, r = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    chans = [np.choose(i, c) for c in ((v, q, p, p, r, v), (r, v, v, q, p, p), (p, p, r, v, v, q))]
    return (255.0 * np.stack(chans, -1)).astype(np.float32)


def ball_rgb(src: Source) -> np.ndarray:
    """Colour (3,) of the bouncing ball of an impact source (its hue is the instance's ``hue``)."""
    return hsv_rgb(src.params.get("hue", 0.0), 0.85, 0.95)


class Canvas:
    """The frames being drawn, plus the pixel grid and the clock every shape shares."""

    def __init__(self, cfg: WorldConfig, ground: float) -> None:
        self.F, self.H, self.W = cfg.n_frames, cfg.height, cfg.width
        self.S = float(min(self.H, self.W))  # length unit of every drawing
        self.fps = float(cfg.fps)
        self.t = frame_times(cfg)  # (F,) seconds
        self.ground = ground * self.H  # pixel row of the ground line
        self.gx = np.arange(self.W, dtype=np.float32) + 0.5  # (W,) pixel-centre columns
        self.gy = np.arange(self.H, dtype=np.float32) + 0.5  # (H,) pixel-centre rows
        self.img = np.empty((self.F, self.H, self.W, 3), np.uint8)  # (F, H, W, 3)
        self.dyn = np.zeros((self.H, self.W), bool)  # pixels that differ between frames so far
        self.lim = np.array([[self.W], [self.H], [self.W], [self.H]], np.float64)  # box clip limits (4, 1)

    def col(self, x: np.ndarray | float) -> np.ndarray:
        """Pixel column of screen position x (-1 left edge, +1 right edge)."""
        return ((np.asarray(x, np.float64) + 1.0) * 0.5 * self.W).astype(np.float32)

    def hz(self, f: np.ndarray | float) -> np.ndarray:
        """A motion frequency capped below the frame rate's Nyquist limit."""
        return np.minimum(f, MAX_VISIBLE_HZ * self.fps)

    def phase(self, f: np.ndarray) -> np.ndarray:
        """Phase (F,) in radians of an oscillation whose frequency (F,) changes over time."""
        return 2.0 * np.pi * np.cumsum(self.hz(f)) / self.fps


# --------------------------------------------------------------------------- painting machinery


def _pf(cv: Canvas, *vals) -> list[np.ndarray]:
    """Per-frame float32 arrays (F,) from scalars or (F,) arrays."""
    out = []
    for v in vals:
        arr = np.asarray(v, np.float32)
        out.append(arr if arr.shape == (cv.F,) else np.full(cv.F, arr, np.float32))
    return out


def _pieces(ib: np.ndarray, idx: np.ndarray) -> list[tuple[slice, int, int, int, int]]:
    """Cut a run of consecutive frames ``idx`` into equal pieces whose union box stays close to one
    frame's box; ``ib`` (4, F) holds the per-frame integer boxes."""
    sub = ib[:, idx]  # (4, n)
    area = (sub[2] - sub[0]) * (sub[3] - sub[1])
    union = (sub[2].max() - sub[0].min()) * (sub[3].max() - sub[1].min())
    big = max(int(area.max()), 1)
    length = idx.size
    if union > 2 * big + 16:  # it moves: pieces spanning about one box of motion
        length = max(1, int(idx.size * big / union))
    length = max(1, min(length, MAX_CHUNK // big))
    starts = np.arange(0, idx.size, length)
    lo, hi = np.minimum.reduceat(sub, starts, axis=1), np.maximum.reduceat(sub, starts, axis=1)
    a0 = int(idx[0])
    ends = np.r_[starts[1:], idx.size]
    return [
        (slice(a0 + int(p), a0 + int(q)), int(lo[0, i]), int(lo[1, i]), int(hi[2, i]), int(hi[3, i]))
        for i, (p, q) in enumerate(zip(starts, ends))
    ]


def _chunks(cv: Canvas, box, on: np.ndarray | None) -> list[tuple[slice | np.ndarray, int, int, int, int]]:
    """Frame selections (slices, or index arrays for scattered frames) with the integer pixel box
    (x0, y0, x1, y1) that holds the shape in all of their frames."""
    b = np.empty((4, cv.F))
    for i in range(4):
        b[i] = box[i]
    ok = np.isfinite(b).all(0)
    if on is not None:
        ok &= on
    b[:, ~ok] = 0.0
    b[:2] = np.floor(b[:2]) - 1  # one pixel of margin for the anti-aliased edge
    b[2:] = np.ceil(b[2:]) + 1
    ib = np.clip(b, 0, cv.lim).astype(np.int64)  # (4, F)
    idx = np.flatnonzero(ok & (ib[2] > ib[0]) & (ib[3] > ib[1]))
    if idx.size == 0:
        return []
    lo, hi = ib[:, idx].min(1), ib[:, idx].max(1)
    union = (hi[2] - lo[0]) * (hi[3] - lo[1])
    big = ((ib[2, idx] - ib[0, idx]) * (ib[3, idx] - ib[1, idx])).max()
    if union <= 2 * big + 16 and idx.size * union <= MAX_CHUNK:  # one piece; frames as a slice when contiguous
        sl = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
        return [(sl, int(lo[0]), int(lo[1]), int(hi[2]), int(hi[3]))]
    cut = np.flatnonzero(np.diff(idx) > 1) + 1
    out = []
    for run in np.split(idx, cut):
        out += _pieces(ib, run)
    return out


def _still(on, color, *params) -> bool:
    """True when a shape is the same on every frame: no frame mask, a fixed colour, constant parameters."""
    if on is not None or (callable(color) and not getattr(color, "static", False)):
        return False
    if not callable(color) and np.ndim(color) > 1:
        return False
    return all(bool((p == p[0]).all()) for p in params)


def _blend(cv: Canvas, sl, y0: int, y1: int, x0: int, x1: int, a: np.ndarray, col) -> None:
    """Blend colour planes ``col`` (3 uint16 scalars or uint16 arrays broadcastable to (n, h, w), 0..255)
    with coverage ``a`` (n|1, h, w) into frames ``sl`` of a pixel box.

    One channel at a time: broadcasting over a trailing axis of 3 runs numpy's inner loop 3 elements
    long, four times slower than these planar passes. Fixed point (coverage in 1/256 steps, uint16
    sums that cannot overflow: 255 * 256 + 128 < 2^16) is a further 20% faster than float32.
    """
    view = cv.img[sl, y0:y1, x0:x1]  # (n, h, w, 3); a copy when sl is an index array
    a16 = (a * 256.0 + 0.5).astype(np.uint16)
    keep = 256 - a16
    for ch in range(3):
        plane = view[..., ch]
        out = np.multiply(plane, keep, dtype=np.uint16)
        out += a16 * col[ch]
        out += 128  # round, then divide by 256
        out >>= 8
        plane[...] = out
    if not isinstance(sl, slice):
        cv.img[sl, y0:y1, x0:x1] = view


def _paint(cv: Canvas, box, cover: Cover, color, on: np.ndarray | None = None, still: bool = False) -> None:
    """Blend ``color`` into the canvas with per-pixel coverage ``cover(sl, xs, ys) -> (n, h, w)``.

    ``box`` is (x0, y0, x1, y1), each scalar or per-frame (F,), in pixels. ``color`` is (3,), per-frame
    (F, 3), or a shader ``color(sl, xs, ys) -> (3, n|1, h, w)`` (channel planes first, see `_blend`);
    ``on`` (F,) bool limits the frames.
    A ``still`` shape is evaluated once; over pixels no moving shape has touched yet it is blended
    into frame 0 only and copied to the others (most props are static, so this saves most of the work).
    """
    if not callable(color):
        color = (np.clip(color, 0.0, 255.0) + 0.5).astype(np.uint16)
    for sl, x0, y0, x1, y1 in _chunks(cv, box, None if still else on):
        if still:
            sl = slice(0, 1)
        xs = cv.gx[x0:x1].reshape(1, 1, -1)  # (1, 1, w)
        ys = cv.gy[y0:y1].reshape(1, -1, 1)  # (1, h, 1)
        a = cover(sl, xs, ys)  # (n, h, w)
        if callable(color):
            col = (np.clip(color(sl, xs, ys), 0.0, 255.0) + 0.5).astype(np.uint16)  # (3, n|1, h, w)
        else:
            col = color[sl].T[:, :, None, None] if color.ndim == 2 else color  # (3, n, 1, 1) or (3,)
        if not still:
            _blend(cv, sl, y0, y1, x0, x1, a, col)
            cv.dyn[y0:y1, x0:x1] = True
        elif cv.dyn[y0:y1, x0:x1].any():  # over moving pixels: blend every frame, a block at a time
            step = max(1, MAX_CHUNK * 8 // a.size)
            for f0 in range(0, cv.F, step):
                _blend(cv, slice(f0, f0 + step), y0, y1, x0, x1, a, col)
        else:
            _blend(cv, sl, y0, y1, x0, x1, a, col)
            cv.img[1:, y0:y1, x0:x1] = cv.img[0, y0:y1, x0:x1]
        if still:
            return


def _cov(d: np.ndarray, al: np.ndarray, sl: slice) -> np.ndarray:
    """Anti-aliased coverage of a signed distance in pixels (negative inside), times per-frame alpha."""
    a = np.clip(0.5 - d, 0.0, 1.0)
    w = al[sl]
    if not (w == 1.0).all():
        a *= w[:, None, None]
    return a


def _local(sl, xs, ys, cx, cy, ca, sa):
    """Shape-local coordinates (u right, v down) of the pixels, for a shape turned by angle (ca, sa)."""
    dx, dy = xs - cx[sl, None, None], ys - cy[sl, None, None]
    if ca is None:
        return dx, dy
    c, s = ca[sl, None, None], sa[sl, None, None]
    return dx * c - dy * s, dx * s + dy * c


def _rot(cx, cy, ang, a, b):
    """World position of the shape-local point (a right, b down) of a frame centred at (cx, cy) turned by ang.

    Positive ``ang`` swings the local "down" axis to the right (a pendulum's convention).
    """
    c, s = np.cos(ang), np.sin(ang)
    return cx + a * c + b * s, cy - a * s + b * c


def _angles(cv: Canvas, ang) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-frame (cos, sin) of a shape's turn, or (None, None) for an upright shape."""
    if ang is None:
        return None, None
    return tuple(_pf(cv, np.cos(ang), np.sin(ang)))


# --------------------------------------------------------------------------- shapes


def circle(cv, cx, cy, r, color, alpha=1.0, on=None) -> None:
    """Disc of radius r (pixels) centred at (cx, cy); all per-frame or scalar."""
    cx, cy, r, al = _pf(cv, cx, cy, r, alpha)

    def cover(sl, xs, ys):
        d = np.sqrt((xs - cx[sl, None, None]) ** 2 + (ys - cy[sl, None, None]) ** 2) - r[sl, None, None]
        return _cov(d, al, sl)

    _paint(cv, (cx - r, cy - r, cx + r, cy + r), cover, color, on, _still(on, color, cx, cy, r, al))


def ellipse(cv, cx, cy, rx, ry, color, ang=None, alpha=1.0, on=None) -> None:
    """Ellipse with radii (rx, ry) turned by ``ang`` (radians, see `_rot`)."""
    cx, cy, rx, ry, al = _pf(cv, cx, cy, rx, ry, alpha)
    ca, sa = _angles(cv, ang)

    def cover(sl, xs, ys):
        u, v = _local(sl, xs, ys, cx, cy, ca, sa)
        ax, ay = rx[sl, None, None], ry[sl, None, None]
        k = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
        g = np.sqrt((u / ax**2) ** 2 + (v / ay**2) ** 2)
        # first-order distance (k - 1) / |grad k|; k / g lies between the two radii (0/0 at the centre)
        scale = np.clip(k / (g + 1e-12), np.minimum(ax, ay), np.maximum(ax, ay))
        return _cov((k - 1.0) * scale, al, sl)

    rr = np.maximum(rx, ry)
    ex, ey = (rx, ry) if ang is None else (rr, rr)
    turn = [] if ca is None else [ca, sa]
    _paint(cv, (cx - ex, cy - ey, cx + ex, cy + ey), cover, color, on, _still(on, color, cx, cy, rx, ry, al, *turn))


def rect(cv, cx, cy, hw, hh, color, ang=None, rad=0.0, alpha=1.0, on=None) -> None:
    """Rectangle of half sizes (hw, hh), corner radius ``rad``, turned by ``ang``."""
    cx, cy, hw, hh, al = _pf(cv, cx, cy, hw, hh, alpha)
    ca, sa = _angles(cv, ang)
    rad = float(rad)

    def cover(sl, xs, ys):
        u, v = _local(sl, xs, ys, cx, cy, ca, sa)
        qx = np.abs(u) - (hw[sl, None, None] - rad)
        qy = np.abs(v) - (hh[sl, None, None] - rad)
        if rad <= 0:
            return _cov(np.maximum(qx, qy), al, sl)
        out = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return _cov(out + np.minimum(np.maximum(qx, qy), 0) - rad, al, sl)

    ex, ey = (hw, hh) if ang is None else (np.hypot(hw, hh),) * 2
    turn = [] if ca is None else [ca, sa]
    _paint(cv, (cx - ex, cy - ey, cx + ex, cy + ey), cover, color, on, _still(on, color, cx, cy, hw, hh, al, *turn))


def capsule(cv, ax, ay, bx, by, r, color, alpha=1.0, on=None) -> None:
    """Thick segment from (ax, ay) to (bx, by) with round caps of radius r."""
    ax, ay, bx, by, r, al = _pf(cv, ax, ay, bx, by, np.maximum(r, MIN_PX), alpha)
    vx, vy = bx - ax, by - ay
    inv = 1.0 / (vx * vx + vy * vy + 1e-9)

    def cover(sl, xs, ys):
        px, py = xs - ax[sl, None, None], ys - ay[sl, None, None]
        ux, uy = vx[sl, None, None], vy[sl, None, None]
        h = np.clip((px * ux + py * uy) * inv[sl, None, None], 0.0, 1.0)
        d = np.sqrt((px - h * ux) ** 2 + (py - h * uy) ** 2) - r[sl, None, None]
        return _cov(d, al, sl)

    box = (np.minimum(ax, bx) - r, np.minimum(ay, by) - r, np.maximum(ax, bx) + r, np.maximum(ay, by) + r)
    _paint(cv, box, cover, color, on, _still(on, color, ax, ay, bx, by, r, al))


def _poly(cv, vx, vy, color, alpha=1.0, on=None) -> None:
    """Convex polygon from per-frame vertices vx, vy (F, n) (any winding), as an intersection of half-planes."""
    vx = np.broadcast_to(np.asarray(vx, np.float32), (cv.F, np.shape(vx)[-1]))
    vy = np.broadcast_to(np.asarray(vy, np.float32), vx.shape)
    (al,) = _pf(cv, alpha)
    ex, ey = np.roll(vx, -1, 1) - vx, np.roll(vy, -1, 1) - vy  # (F, n) edges
    ln = np.sqrt(ex * ex + ey * ey) + 1e-9
    nx, ny = ey / ln, -ex / ln
    inward = (vx.mean(1, keepdims=True) - vx) * nx + (vy.mean(1, keepdims=True) - vy) * ny > 0
    nx, ny = np.where(inward, -nx, nx), np.where(inward, -ny, ny)  # outward normals
    off = vx * nx + vy * ny

    def cover(sl, xs, ys):
        d = None
        for i in range(vx.shape[1]):
            di = xs * nx[sl, i, None, None] + ys * ny[sl, i, None, None] - off[sl, i, None, None]
            d = di if d is None else np.maximum(d, di)
        return _cov(d, al, sl)

    _paint(cv, (vx.min(1), vy.min(1), vx.max(1), vy.max(1)), cover, color, on, _still(on, color, al, *vx.T, *vy.T))


def _xband(cv, y0, y1, xmin, xmax, prof, color, alpha=1.0, on=None) -> None:
    """Region between rows y0..y1 whose centre and half-width per row come from ``prof(sl, ys) -> (xc, hw)``.

    ``prof`` returns arrays broadcastable to (n, h, 1); [xmin, xmax] must bound the region per frame.
    Grass blades and flames are drawn this way.
    """
    y0, y1, al = _pf(cv, y0, y1, alpha)

    def cover(sl, xs, ys):
        xc, hw = prof(sl, ys)
        dv = np.maximum(y0[sl, None, None] - ys, ys - y1[sl, None, None])
        return _cov(np.maximum(np.abs(xs - xc) - hw, dv), al, sl)

    _paint(cv, (xmin, y0, xmax, y1), cover, color, on)


def _yband(cv, x0, x1, ymin, ymax, prof, color, alpha=1.0, on=None) -> None:
    """Region between columns x0..x1 with per-column centre and half-width ``prof(sl, xs) -> (yc, hw)``."""
    x0, x1, al = _pf(cv, x0, x1, alpha)

    def cover(sl, xs, ys):
        yc, hw = prof(sl, xs)
        dh = np.maximum(x0[sl, None, None] - xs, xs - x1[sl, None, None])
        return _cov(np.maximum(np.abs(ys - yc) - hw, dh), al, sl)

    _paint(cv, (x0, ymin, x1, ymax), cover, color, on)


def _dots(cv, f, x, y, r, color, alpha=1.0) -> None:
    """Many small discs at once: dot i is drawn on frame f[i] at (x[i], y[i]) with radius r[i].

    Vectorised over dots with one square patch each (sparks, drops, bubbles, leaves, puffs); where dots
    overlap on one frame the last one wins, which is invisible at these sizes.
    """
    f = np.asarray(f, np.int64)
    f, x, y, r, al = np.broadcast_arrays(f, *(np.asarray(v, np.float32) for v in (x, y, r, alpha)))
    keep = (al > 0) & (x > -r - 1) & (x < cv.W + r + 1) & (y > -r - 1) & (y < cv.H + r + 1)
    f, x, y, r, al = f[keep], x[keep], y[keep], r[keep], al[keep]
    if f.size == 0:
        return
    col = np.asarray(color, np.float32)
    col = col[keep] if col.ndim == 2 else np.broadcast_to(col, (f.size, 3))
    p = int(np.ceil(2 * r.max())) + 3
    xi = np.floor(x - r).astype(np.int64)[:, None] - 1 + np.arange(p)  # (K, p)
    yi = np.floor(y - r).astype(np.int64)[:, None] - 1 + np.arange(p)  # (K, p)
    d = np.sqrt((xi + 0.5 - x[:, None])[:, None, :] ** 2 + (yi + 0.5 - y[:, None])[:, :, None] ** 2) - r[:, None, None]
    a = np.clip(0.5 - d, 0.0, 1.0) * al[:, None, None]  # (K, p, p)
    ok = (a > 0) & ((xi >= 0) & (xi < cv.W))[:, None, :] & ((yi >= 0) & (yi < cv.H))[:, :, None]
    k, iy, ix = np.nonzero(ok)
    _blend_px(cv, (f[k] * cv.H + yi[k, iy]) * cv.W + xi[k, ix], a[k, iy, ix], col[k].T)


def _blend_px(cv: Canvas, pix: np.ndarray, a, col) -> None:
    """Blend scattered pixels: flat pixel indices ``pix`` (M,) into the (F * H * W) canvas, coverage ``a``
    (M,) or scalar, colour planes ``col`` (3,) or (3, M). Last write wins where an index repeats."""
    flat = cv.img.reshape(-1, 3)  # (F * H * W, 3) view of the canvas
    for ch in range(3):
        plane = flat[:, ch]
        v = plane[pix].astype(np.float32)
        plane[pix] = v + (col[ch] - v) * a + 0.5
    cv.dyn.reshape(-1)[pix % (cv.H * cv.W)] = True


# --------------------------------------------------------------------------- timing


def _event_frames(cv: Canvas, events) -> np.ndarray:
    """Frame index nearest each event time (the frame that shows the event)."""
    return np.floor(np.asarray(events, np.float64) * cv.fps + 0.5).astype(np.int64)


def event_age(cv: Canvas, events) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the latest shown event (0 on its frame, inf before the first) and its index (-1 before)."""
    kf = _event_frames(cv, events)
    k = np.arange(cv.F)
    which = np.searchsorted(kf, k, side="right") - 1
    age = np.where(which >= 0, (k - kf[np.maximum(which, 0)]) / cv.fps if kf.size else 0.0, np.inf)
    return age, which


def _snap(cv: Canvas, events) -> np.ndarray:
    """Frame times (F,) with each event's nearest frame moved onto the event itself.

    Trajectories evaluated on these times hit their contact pose exactly on the event's frame.
    """
    t = cv.t.copy()
    ev = np.asarray(events, np.float64)
    kf = _event_frames(cv, ev)
    ok = (kf >= 0) & (kf < cv.F)
    t[kf[ok]] = ev[ok]
    return t


def nearest_event(cv: Canvas, events) -> tuple[np.ndarray, np.ndarray]:
    """Signed seconds from each frame to its nearest event frame (F,) and that event's index (F,)."""
    kf = _event_frames(cv, events)
    if kf.size == 0:
        return np.full(cv.F, np.inf), np.zeros(cv.F, np.int64)
    k = np.arange(cv.F)
    j = np.clip(np.searchsorted(kf, k), 1, kf.size) - 1
    j = np.where((j + 1 < kf.size) & (np.abs(kf[np.minimum(j + 1, kf.size - 1)] - k) < np.abs(kf[j] - k)), j + 1, j)
    return (k - kf[j]) / cv.fps, j


def event_gains(src: Source, which: np.ndarray) -> np.ndarray:
    """Per-frame gain (F,) of the event indexed by ``which`` (0 where there is none)."""
    g = np.asarray(src.event_gain, np.float32)
    if g.size == 0:
        return np.zeros(which.shape, np.float32)
    return np.where(which >= 0, g[np.clip(which, 0, g.size - 1)], 0.0).astype(np.float32)


def source_place(cv: Canvas, src: Source) -> tuple[np.ndarray, float, float]:
    """Pixel column (F,), pixel row of the vertical centre, and the pixel length unit of a source."""
    return cv.col(src.x_at(cv.t)), src.y * cv.H, cv.S * src.size


def floor_of(cv: Canvas, cy: float, s: float, below: float) -> float:
    """Row where a standing object meets the ground: ``below * s`` under its centre, never above the ground line."""
    return max(cy + below * s, cv.ground + 0.03 * cv.S)


def _planes(base: np.ndarray, shade: Callable, static: bool = True):
    """Shader (see `_paint`) multiplying a base colour (3,) by a brightness field ``shade(sl, xs, ys)``."""

    def shader(sl, xs, ys):
        return base[:, None, None, None] * shade(sl, xs, ys)[None]

    shader.static = static
    return shader


def _facing(cx: np.ndarray, cy, d: float, s: float, pts: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame polygon vertices (F, n) of points given as (forward, down) offsets in units of s."""
    vx = np.stack([cx + d * a * s for a, _ in pts], 1)
    vy = np.stack([cy + b * s + 0 * cx for _, b in pts], 1)
    return vx, vy


def _hash(ix: np.ndarray, iy: np.ndarray, seed: float) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer cell (the classic shader sine hash)."""
    v = np.sin(ix * 12.9898 + iy * 78.233 + seed * 37.719) * 43758.5453
    return (v - np.floor(v)).astype(np.float32)


# --------------------------------------------------------------------------- background


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in -1..1, shape (h, w): a random grid with ``cells`` cells along the shorter side
    (square cells at any aspect ratio), smoothly interpolated."""
    ny, nx = max(1, round(cells * h / min(h, w))), max(1, round(cells * w / min(h, w)))
    grid = rng.uniform(-1.0, 1.0, (ny + 1, nx + 1))

    def axis(n, m):
        p = (np.arange(n) + 0.5) / n * m
        i = np.minimum(np.floor(p).astype(np.int64), m - 1)
        f = p - i
        return i, f * f * (3 - 2 * f)  # smoothstep: no visible grid creases

    iy, fy = axis(h, ny)
    ix, fx = axis(w, nx)
    top = grid[iy][:, ix] * (1 - fx) + grid[iy][:, ix + 1] * fx
    bot = grid[iy + 1][:, ix] * (1 - fx) + grid[iy + 1][:, ix + 1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(np.float32)


def draw_background(cv: Canvas, bg: dict) -> np.ndarray:
    """Static backdrop (H, W, 3) float32: textured wall/sky above the ground line, darker ground below."""
    rng = np.random.default_rng(int(bg.get("tex_seed", 0)))
    hue, sat, val = bg.get("hue", 0.6), bg.get("sat", 0.2), bg.get("val", 0.6)
    yy, xx = cv.gy[:, None] / cv.S, cv.gx[None, :] / cv.S  # (H, 1), (1, W) in S units
    tex = bg.get("texture", "plain")
    shade = np.ones((cv.H, cv.W), np.float32)
    if tex == "stripes":
        ang, period = rng.uniform(0, np.pi), rng.uniform(0.07, 0.2)
        wave = np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)
        shade = 1.0 + 0.12 * np.tanh(3.0 * wave)
    elif tex == "noise":
        shade = 1.0 + 0.22 * _smooth_noise(rng, cv.H, cv.W, int(rng.integers(4, 10)))
    elif tex == "gradient":
        shade = np.broadcast_to(1.25 - 0.5 * cv.gy[:, None] / max(cv.ground, 1.0), (cv.H, cv.W))
    sky = hsv_rgb(hue, sat, val) * shade[..., None]
    grain = 1.0 + 0.12 * _smooth_noise(rng, cv.H, cv.W, max(8, min(cv.H, cv.W) // 6))
    ground = hsv_rgb(hue + 0.08, min(sat + 0.15, 1.0), val * 0.6) * grain[..., None]
    under = np.clip(cv.gy - cv.ground + 0.5, 0.0, 1.0)[:, None, None]  # anti-aliased horizon
    out = sky * (1 - under) + ground * under
    line = np.exp(-(((cv.gy - cv.ground) / max(0.006 * cv.S, 0.5)) ** 2))[:, None, None]
    return np.clip(out * (1 - 0.35 * line), 0.0, 255.0)  # a faint dark seam marks the horizon


# --------------------------------------------------------------------------- impacts


def _bounce_height(t: np.ndarray, events, g: float, cap: float, drop: float) -> np.ndarray:
    """Height (pixels, F) above the slab of a ball that touches it at every event.

    Before the first event it is released from ``drop`` pixels up (out of the frame) and falls freely,
    landing at the event; between two events it flies a parabola of peak ``g * dt^2 / 8`` (the
    ballistic peak of a flight lasting dt), capped at ``cap`` so it stays in the frame; after the last
    event it rests.
    """
    ev = np.asarray(events, np.float64)
    h = np.zeros_like(t)
    if ev.size == 0:
        return h
    i = np.searchsorted(ev, t, side="right")  # events at or before t
    pre = i == 0
    fall = np.sqrt(2.0 * drop / g)  # seconds from release to the first contact
    h[pre] = drop - 0.5 * g * np.clip(t[pre] - (ev[0] - fall), 0.0, None) ** 2
    mid = (i > 0) & (i < ev.size)
    a, b = ev[i[mid] - 1], ev[i[mid]]
    u = (t[mid] - a) / (b - a)
    h[mid] = 4.0 * np.minimum(g * (b - a) ** 2 / 8.0, cap) * u * (1 - u)
    return h


def _block_shader(material: str, top: float, hh: float, hue: float, s: float):
    """Colour shader of an impact block: wood grain, metal highlight band or stone speckles."""
    if material == "wood":
        base = hsv_rgb(0.07 + 0.06 * (hue - 0.5), 0.62, 0.5 + 0.15 * hue)
        period = max(2.0, 0.045 * s)
        return _planes(
            base,
            lambda sl, xs, ys: (
                1 + 0.2 * np.sin(2 * np.pi * (ys - top) / period + 2.0 * np.sin(xs / (2.5 * period) + 7 * hue))
            ),
        )
    if material == "metal":
        base = hsv_rgb(hue, 0.1, 0.55)
        return _planes(base, lambda sl, xs, ys: 0.7 + 0.75 * np.exp(-(((ys - top - 0.35 * hh) / (0.3 * hh)) ** 2)))
    base = hsv_rgb(hue, 0.07, 0.5)
    cell = max(1.0, 0.025 * s)

    return _planes(base, lambda sl, xs, ys: 0.65 + 0.6 * _hash(np.floor(xs / cell), np.floor(ys / cell), hue))


def _draw_block(cv: Canvas, material: str, cx, top: float, base: float, hw: float, hue: float, s: float) -> None:
    """The struck object: a block of the material from ``top`` down to the ground at ``base``."""
    hh = 0.5 * (base - top)
    cyb = top + hh
    if material == "glass":  # pale, see-through, with a bright top edge and a white glint
        rect(cv, cx, cyb, hw, hh, hsv_rgb(0.5 + 0.05 * (hue - 0.5), 0.3, 0.97), rad=0.1 * hw, alpha=0.45)
        rect(cv, cx, top + 0.02 * s, hw * 0.95, 0.015 * s, WHITE, alpha=0.6)
        capsule(cv, cx - 0.55 * hw, base - 0.25 * hh, cx - 0.1 * hw, top + 0.35 * hh, 0.012 * s, WHITE, alpha=0.85)
        return
    rad = {"stone": 0.3 * min(hw, hh), "metal": 0.05 * hw}.get(material, 0.08 * hw)
    rect(cv, cx, cyb, hw, hh, _block_shader(material, top, hh, hue, s), rad=rad)
    if material == "metal":  # a dark rim reads as a thick steel plate
        rect(cv, cx, top + 0.012 * s, hw * 0.98, 0.012 * s, INK, alpha=0.5)


def _draw_impact(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Block of the class's material on the ground with a ball that touches its top at every event."""
    cx, cy, s = source_place(cv, src)
    hue = float(src.params.get("hue", 0.5))
    hw, r = 0.15 * s, 0.05 * s
    top, base = cy, floor_of(cv, cy, s, 0.16)
    _draw_block(cv, CLASSES[src.cls].material, cx, top, base, hw, hue, s)
    cap = max(top - 2 * r - 0.03 * cv.H, 0.0)  # the ball's top stays inside the frame
    h = _bounce_height(_snap(cv, src.events), src.events, G_SCREEN * cv.H, cap, top + 2 * r)
    age, which = event_age(cv, src.events)
    touch = age == 0
    rx, ry = np.where(touch, 1.2 * r, r), np.where(touch, 0.8 * r, r)  # squash on contact
    bx = cx + 0.3 * hw * (hue - 0.5)
    by = top - ry - h
    flash = 0.7 * event_gains(src, which) * np.where(age < 1.5 / cv.fps, 1 - 0.5 * np.minimum(age, 1) * cv.fps, 0.0)
    ellipse(cv, bx, top, 1.8 * r, 0.35 * r, WHITE, alpha=flash, on=flash > 0)  # under the ball
    ellipse(cv, bx, by, rx, ry, ball_rgb(src))
    circle(cv, bx - 0.35 * r, by - 0.35 * ry, 0.28 * r, WHITE, alpha=0.6)


# --------------------------------------------------------------------------- textures: rain, wind, water, fire


def _draw_rain(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Falling streaks on the source's side of the frame, as dense as the intensity, with splashes on the ground.

    Each streak is as long as a drop falls in one frame (motion blur) and is stamped pixel by pixel,
    so the cost follows the number of visible drops, not the frame area.
    """
    cx, _, _ = source_place(cv, src)
    inten = src.intensity_at(cv.t).astype(np.float32)
    hb = int(min(cv.H, np.ceil(cv.ground + 0.03 * cv.H)))  # drops end just below the ground line
    speed = 1.6 * cv.H  # pixels per second
    length = int(np.clip(round(speed / cv.fps), 2, max(2, 0.2 * cv.H)))
    slant = float(rng.uniform(-0.25, 0.25))  # columns per row of fall
    period = hb + length  # a drop leaving the bottom re-enters above the top
    n = max(1, int(0.12 * hb * cv.W / length))
    x0, y0, thr = rng.uniform(0, cv.W, n), rng.uniform(0, period, n), rng.uniform(0, 1, n)
    wcol = np.clip(1.6 - np.abs(cv.gx - cx[0]) / (0.5 * cv.W * src.size), 0.0, 1.0)  # (W,) density by column
    fall = speed * cv.t[:, None]  # (F, 1) pixels fallen
    head = np.mod(y0 + fall, period) - length  # (F, n) top row of each streak
    col0 = np.mod(x0 + slant * fall, cv.W)  # (F, n) its column there
    f, j = np.nonzero(thr < inten[:, None] * wcol[col0.astype(np.int64)])  # visible drops
    step = np.arange(length)
    rows = np.floor(head[f, j])[:, None] + step  # (K, L)
    cols = np.mod(np.floor(col0[f, j][:, None] + slant * step), cv.W)
    ok = (rows >= 0) & (rows < hb)
    pix = ((f[:, None] * cv.H + rows) * cv.W + cols)[ok].astype(np.int64)
    _blend_px(cv, pix, 0.6, hsv_rgb(0.58, 0.18, 0.98))
    k = max(4, cv.W // 5)  # splash sites on the ground
    sx, sy = rng.uniform(0, cv.W, k), cv.ground + rng.uniform(0.005, 0.08, k) * cv.H
    per, ph, th = rng.uniform(0.25, 0.7, k), rng.uniform(0, 1, k), rng.uniform(0, 1, k)
    vis = (np.mod(cv.t[:, None] / per + ph, 1.0) < 0.3) & (th < inten[:, None] * np.interp(sx, cv.gx, wcol))
    f, i = np.nonzero(vis)  # (F, k) splashes on
    _dots(cv, f, sx[i], sy[i], max(0.6, 0.012 * cv.S), WHITE, 0.75)


def _blade(cv: Canvas, bx: float, base: float, tipx, tipy, w0: float, color) -> None:
    """One grass blade from (bx, base) to a per-frame tip, bending quadratically and tapering."""
    tipx, tipy = _pf(cv, tipx, tipy)

    def prof(sl, ys):
        u = np.clip((base - ys) / (base - tipy[sl, None, None]), 0.0, 1.0)
        return bx + (tipx[sl, None, None] - bx) * u * u, w0 * (1.0 - 0.8 * u)

    _xband(cv, tipy, base, np.minimum(bx, tipx) - w0, np.maximum(bx, tipx) + w0, prof, color)


def _draw_wind(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """A clump of grass bending with the wind's intensity, with leaves drifting faster when it blows harder."""
    cx, cy, s = source_place(cv, src)
    inten = src.intensity_at(cv.t)
    hue = float(src.params.get("hue", 0.5))
    side = float(rng.choice([-1.0, 1.0]))
    base = floor_of(cv, cy, s, 0.15)
    n = 9
    xs = cx[0] + np.linspace(-0.35, 0.35, n) * s + rng.uniform(-0.03, 0.03, n) * s
    lengths = 0.26 * s * rng.uniform(0.7, 1.1, n)
    w0 = max(MIN_PX, 0.016 * s)
    for i in range(n):
        flutter = 0.15 * (0.3 + inten) * np.sin(2 * np.pi * cv.hz(rng.uniform(1.2, 2.8)) * cv.t + rng.uniform(0, 6.3))
        ang = side * (0.1 + 0.9 * inten) + flutter  # radians from vertical
        color = hsv_rgb(0.2 + 0.1 * (hue - 0.5) + rng.uniform(-0.04, 0.04), 0.7, rng.uniform(0.5, 0.8))
        _blade(cv, xs[i], base, xs[i] + lengths[i] * np.sin(ang), base - lengths[i] * np.cos(0.8 * ang), w0, color)
    k = 5  # leaves/dust wrapping around a window centred on the source
    span = 0.9 * cv.W
    drift = np.cumsum(side * (0.1 + 0.9 * inten) * 0.5 * cv.W) / cv.fps  # (F,) pixels travelled
    u = np.mod(rng.uniform(0, 1, k)[None, :] + drift[:, None] / span, 1.0)  # (F, k) position in the window
    lx = cx[0] - span / 2 + u * span
    ly = base - rng.uniform(0.1, 0.6, k) * s + 0.04 * s * np.sin(2 * np.pi * cv.hz(1.3) * cv.t[:, None] + np.arange(k))
    colors = hsv_rgb(rng.uniform(0.05, 0.15, k), 0.7, 0.75)
    f = np.repeat(np.arange(cv.F), k)
    _dots(cv, f, lx.ravel(), ly.ravel(), max(MIN_PX, 0.018 * s), np.tile(colors, (cv.F, 1)), np.sin(np.pi * u).ravel())


def _draw_water(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """A blue stream across the lower frame: ripples move and sharpen with the intensity; bubbles drift along."""
    cx, _, s = source_place(cv, src)
    inten = src.intensity_at(cv.t).astype(np.float32)
    hue = float(src.params.get("hue", 0.5))
    top = cv.ground + 0.02 * cv.H
    bot = min(cv.H + 0.5 * s, top + max(0.12 * cv.H, 0.16 * s))
    half = 0.6 * cv.W * src.size
    period = max(5.0, round(0.14 * s))
    flow = float(rng.choice([-1.0, 1.0]))
    speed = flow * np.minimum((0.3 + 1.2 * inten) * 2 * period, 0.35 * period * cv.fps)  # never aliases
    off = (np.cumsum(speed) / cv.fps).astype(np.float32)  # (F,) pixels the ripples moved
    row_ph = rng.uniform(0, 2 * np.pi)
    blue = hsv_rgb(0.57 + 0.06 * (hue - 0.5), 0.6, 0.6)

    def water(sl, xs, ys):
        ang_x = 2 * np.pi * (xs - off[sl, None, None]) / period  # (n, 1, w)
        ang_y = 3.0 * np.sin(ys / (0.5 * period) + row_ph)  # (1, h, 1): wavy crests
        rip = np.sin(ang_x) * np.cos(ang_y) + np.cos(ang_x) * np.sin(ang_y)  # sin(ang_x + ang_y), cheaply
        c = inten[sl, None, None]
        crest = np.clip((rip - 0.6) * 2.5, 0.0, 1.0) * (0.2 + 0.6 * c)
        shade = (1 + 0.25 * c * rip)[None] * blue[:, None, None, None]  # (3, n, h, w)
        return shade + (255.0 - shade) * crest[None]

    cy = 0.5 * (top + bot)
    rect(cv, cx[0], cy, half, 0.5 * (bot - top), water, rad=0.45 * (bot - top))
    k = 6
    u = np.mod(rng.uniform(0, 1, k)[None, :] + off[:, None] / (2 * half), 1.0)  # (F, k)
    blink = np.mod(0.6 * cv.t[:, None] + rng.uniform(0, 1, k), 1.0) < 0.5  # (F, k) each bubble half the time
    vis = blink & (rng.uniform(0, 1, k) < 0.2 + inten[:, None])  # more of them when the stream is strong
    f, i = np.nonzero(vis)
    bxs = cx[0] - 0.85 * half + u[f, i] * 1.7 * half
    bys = top + (0.25 + 0.5 * rng.uniform(0, 1, k)[i]) * (bot - top)
    _dots(cv, f, bxs, bys, max(MIN_PX, 0.016 * s), WHITE, 0.85)


def _flame(cv: Canvas, cx, fb: float, height, width, sway, color) -> None:
    """Teardrop flame: round bottom at row fb, tip ``height`` above, tip swaying by ``sway`` pixels."""
    cx, height, width, sway = _pf(cv, cx, height, width, sway)
    rb = 0.6 * width  # vertical radius of the round bottom

    def prof(sl, ys):
        h, w = height[sl, None, None], width[sl, None, None]
        u = (fb - ys) / h
        below = w * np.sqrt(np.clip(1 - ((ys - fb) / rb[sl, None, None]) ** 2, 0.0, 1.0))
        above = w * np.clip(1 - u, 0.0, 1.0) ** 1.2 * (1 + 0.6 * u)
        return cx[sl, None, None] + sway[sl, None, None] * np.clip(u, 0, 1) ** 2, np.where(u < 0, below, above)

    xr = width * 1.3 + np.abs(sway)
    _xband(cv, fb - height, fb + rb, cx - xr, cx + xr, prof, color)


def _draw_fire(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Flame on crossed logs; its height flickers with the intensity and flares with a spark at each crackle."""
    cx, cy, s = source_place(cv, src)
    inten = src.intensity_at(cv.t)
    base = floor_of(cv, cy, s, 0.12)
    wood = hsv_rgb(0.06, 0.6, 0.25)
    capsule(cv, cx - 0.15 * s, base, cx + 0.15 * s, base - 0.05 * s, 0.028 * s, wood)
    capsule(cv, cx + 0.15 * s, base, cx - 0.15 * s, base - 0.05 * s, 0.028 * s, wood * 1.3)
    age, which = event_age(cv, src.events)
    flare = event_gains(src, which) * np.clip(1 - age / 0.1, 0.0, 1.0)  # ~80 ms burst
    ph = rng.uniform(0, 2 * np.pi, 3)
    flick = 0.6 * np.sin(2 * np.pi * cv.hz(3.3) * cv.t + ph[0]) + 0.4 * np.sin(2 * np.pi * cv.hz(5.1) * cv.t + ph[1])
    height = 0.3 * s * (0.45 + 0.55 * inten) * (1 + 0.12 * flick) * (1 + 0.6 * flare)
    width = 0.085 * s * (0.8 + 0.2 * inten) * (1 + 0.3 * flare)
    sway = 0.5 * width * np.sin(2 * np.pi * cv.hz(1.7) * cv.t + ph[2])
    fb = base - 0.05 * s
    hue = 0.02 * (float(src.params.get("hue", 0.5)) - 0.5)
    core = hsv_rgb(0.14 + hue, 0.75 * (1 - 0.7 * np.minimum(flare, 1)), 1.0)  # (F, 3): whitens on a flare
    for scale, color in ((1.0, hsv_rgb(0.02 + hue, 0.9, 0.92)), (0.72, hsv_rgb(0.075 + hue, 0.95, 1.0)), (0.45, core)):
        _flame(cv, cx, fb, height * scale, width * scale, sway * scale, color)
    _sparks(cv, src, rng, cx, fb - height, s)


def _sparks(cv: Canvas, src: Source, rng: np.random.Generator, cx, top, s: float) -> None:
    """A spark per crackle, leaving the flame's tip on the event's frame and rising for 0.6 s."""
    life = int(np.ceil(0.6 * cv.fps))
    kf = _event_frames(cv, src.events)
    if kf.size == 0:
        return
    f = (kf[:, None] + np.arange(life)).ravel()  # (E * life,)
    e = np.repeat(np.arange(kf.size), life)
    a = np.tile(np.arange(life) / cv.fps, kf.size)  # age, seconds
    ok = f < cv.F
    f, e, a = f[ok], e[ok], a[ok]
    drift = rng.uniform(-0.25, 0.25, kf.size)
    x = cx[f] + drift[e] * s * a + 0.02 * s * np.sin(12 * a)
    y = top[kf[e]] - 0.7 * s * a + 0.4 * s * a * a
    _dots(cv, f, x, y, max(MIN_PX, 0.018 * s), hsv_rgb(0.13, 0.5, 1.0), 1.0 - a / 0.6)


# --------------------------------------------------------------------------- mechanical


def _draw_clock(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Round clock whose long hand jumps one step (30 degrees) on each tick's frame and is still between."""
    cx, cy, s = source_place(cv, src)
    big = 0.16 * s
    circle(cv, cx, cy, big, hsv_rgb(src.params.get("hue", 0.0), 0.65, 0.45))
    circle(cv, cx, cy, 0.84 * big, hsv_rgb(0.12, 0.05, 0.97))
    for k in range(12):  # hour marks, bigger at 12, 3, 6 and 9
        mark = max(0.5, (0.07 if k % 3 == 0 else 0.04) * big)
        circle(cv, cx + 0.68 * big * np.sin(k * np.pi / 6), cy - 0.68 * big * np.cos(k * np.pi / 6), mark, INK, 0.9)
    hour = rng.uniform(0, 2 * np.pi)
    capsule(cv, cx, cy, cx + 0.4 * big * np.sin(hour), cy - 0.4 * big * np.cos(hour), 0.06 * big, INK)
    ticks = np.searchsorted(_event_frames(cv, src.events), np.arange(cv.F), side="right")  # (F,) ticks shown
    ang = rng.integers(0, 12) * np.pi / 6 + ticks * np.pi / 6
    hand = hsv_rgb(0.0, 0.8, 0.7)
    capsule(cv, cx, cy, cx + 0.72 * big * np.sin(ang), cy - 0.72 * big * np.cos(ang), 0.035 * big, hand)
    circle(cv, cx, cy, max(0.09 * big, 1.0), INK)


def _metal_shader(color: np.ndarray, top, height: float):
    """Vertical metal gradient: a bright band near the top, darker towards the bottom."""
    top = np.asarray(top, np.float32)

    def shade(sl, xs, ys):
        y = (ys - (top[sl, None, None] if top.ndim else top)) / height
        return color[:, None, None, None] * (0.75 + 0.5 * np.exp(-(((y - 0.2) / 0.18) ** 2)) - 0.2 * y)[None]

    return shade


def _draw_engine(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Machine box shaking with the rpm, with a pumping piston, a gauge needle and exhaust puffs."""
    cx, cy, s = source_place(cv, src)
    inten = src.intensity_at(cv.t)
    rpm = float(src.params.get("rpm", 1000.0))
    phase = cv.phase(0.5 + 3.0 * rpm / 1000.0 * inten)  # visible piston rate, a few Hz
    shake = 0.012 * s * (0.3 + inten)
    jx = shake * np.sin(2 * np.pi * cv.hz(9.0) * cv.t)
    jy = 0.5 * shake * np.sin(2 * np.pi * cv.hz(7.0) * cv.t + 1.0)
    bx, by, hw, hh = cx + jx, cy + jy, 0.17 * s, 0.1 * s
    metal = hsv_rgb(src.params.get("hue", 0.5), 0.35, 0.6)
    rect(cv, cx, cy + hh + 0.015 * s, 1.1 * hw, 0.02 * s, INK)  # feet stay put
    cyl_x, cyl_y = bx - 0.07 * s, by - hh - 0.05 * s
    rod_top = cyl_y - 0.06 * s - 0.05 * s * (1 + np.sin(phase))
    capsule(cv, cyl_x, cyl_y, cyl_x, rod_top, 0.012 * s, hsv_rgb(0, 0, 0.75))
    rect(cv, cyl_x, rod_top, 0.035 * s, 0.012 * s, hsv_rgb(0, 0, 0.85))
    rect(cv, cyl_x, cyl_y, 0.045 * s, 0.05 * s, metal * 0.7, rad=0.008 * s)
    rect(cv, bx, by, hw, hh, _metal_shader(metal, by - hh, 2 * hh), rad=0.02 * s)
    gx, gy, gr = bx + 0.08 * s, by + 0.01 * s, 0.05 * s
    circle(cv, gx, gy, gr, INK)
    circle(cv, gx, gy, 0.82 * gr, WHITE)
    needle = -2.0 + 3.4 * inten + 0.06 * np.sin(phase)  # radians from straight up
    tip = (gx + 0.75 * gr * np.sin(needle), gy - 0.75 * gr * np.cos(needle))
    capsule(cv, gx, gy, *tip, 0.1 * gr, hsv_rgb(0, 0.9, 0.8))
    px, py = bx + 0.12 * s, by - hh - 0.05 * s
    rect(cv, px, py + 0.025 * s, 0.012 * s, 0.03 * s, INK)
    k = 3  # one puff per piston cycle, three alive at once
    age = np.mod(phase[:, None] / (2 * np.pi) + np.arange(k) / k, 1.0)  # (F, k)
    f = np.repeat(np.arange(cv.F), k)
    alpha = (0.6 * (1 - age) * (0.4 + 0.6 * inten[:, None])).ravel()
    _dots(
        cv,
        f,
        (px[:, None] + 0.1 * s * age).ravel(),
        (py[:, None] - 0.3 * s * age).ravel(),
        (0.02 * s + 0.04 * s * age).ravel(),
        hsv_rgb(0, 0, 0.8),
        alpha,
    )


def _gait(cv: Canvas, events, d: float, sw: float, lift: float):
    """Foot offsets of a walker that plants a foot on each event's frame.

    Returns x offsets (2, F) of both feet from the hip, their heights (2, F) above the ground, and the
    swing progress u (F,). The foot landing at event i swings from behind (-sw) to the front (+sw)
    between events i-1 and i, lifted by ``lift * sin(pi u)``, while the other foot slides back on the ground.
    """
    ev = np.asarray(events, np.float64)
    if ev.size == 0:
        x = np.array([[-0.3 * sw], [0.3 * sw]]) * np.ones(cv.F)
        return x, np.zeros((2, cv.F)), np.zeros(cv.F)
    t = _snap(cv, ev)
    gap = float(np.median(np.diff(ev))) if ev.size > 1 else 0.5
    starts = np.r_[ev[0] - gap, ev[:-1]]
    i = np.searchsorted(ev, t, side="left")  # next event to land (t == event: landing now)
    ii = np.minimum(i, ev.size - 1)
    u = np.where(i < ev.size, np.clip((t - starts[ii]) / (ev[ii] - starts[ii]), 0.0, 1.0), 1.0)
    swing_h = lift * np.sin(np.pi * u)
    swing_x = d * sw * (2 * u - 1 - 0.3 * np.sin(np.pi * u))  # the lifted foot trails, clear of the other leg
    first = ii % 2 == 0  # foot 0 lands at even events
    stance_x = d * sw * (1 - 2 * u)
    x = np.stack([np.where(first, swing_x, stance_x), np.where(first, stance_x, swing_x)])
    h = np.stack([np.where(first, swing_h, 0.0), np.where(first, 0.0, swing_h)])
    return x, h, u


@dataclass
class _Walker:
    """Pose of the walking figure on every frame (pixels)."""

    hip_x: np.ndarray  # (F,) hip column = the source's x
    hip_y: np.ndarray  # (F,) hip row, rising mid-stride
    sh_y: np.ndarray  # (F,) shoulder row
    feet: float  # ground contact row
    fx: np.ndarray  # (2, F) foot offsets from the hip
    fh: np.ndarray  # (2, F) foot heights above the ground
    d: float  # walking direction, +1 right / -1 left
    s: float  # length unit
    tall: float  # figure height


def _walker_limbs(cv: Canvas, w: _Walker, j: int, pants: np.ndarray, shirt: np.ndarray) -> None:
    """Leg (hip to foot, with a shoe) and the opposite-phase arm of side j of the walker."""
    s = w.s
    ax, ay = w.hip_x + w.fx[j], w.feet - w.fh[j]
    capsule(cv, w.hip_x, w.hip_y, ax, ay - 0.02 * s, 0.027 * s, pants)
    ellipse(cv, ax + w.d * 0.022 * s, ay - 0.012 * s, 0.036 * s, 0.016 * s, INK)
    swing = -w.fx[1 - j] / max(np.abs(w.fx).max(), 1e-6)  # arms swing against the opposite leg
    hx, hy = _rot(w.hip_x, w.sh_y, -w.d * swing * 0.5, 0.0, 0.28 * w.tall)
    capsule(cv, w.hip_x, w.sh_y, hx, hy, 0.018 * s, shirt * 0.85)


def _draw_footsteps(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Stick figure walking along x(t); a foot plants on the ground on each step's frame."""
    cx, cy, s = source_place(cv, src)
    d = 1.0 if src.x1 >= src.x0 else -1.0
    tall = 0.42 * s
    leg, feet = 0.5 * tall, cy + 0.5 * tall
    fx, fh, u = _gait(cv, src.events, d, 0.45 * leg, 0.32 * leg)
    hip_y = feet - 0.97 * leg - 0.03 * tall * np.sin(np.pi * u)  # the body rises mid-stride
    w = _Walker(cx, hip_y, hip_y - 0.3 * tall, feet, fx, fh, d, s, tall)
    hue = float(src.params.get("hue", 0.5))
    pants, shirt = hsv_rgb(hue + 0.5, 0.45, 0.35), hsv_rgb(hue, 0.7, 0.75)
    _walker_limbs(cv, w, 1, pants * 0.7, shirt * 0.7)  # far side, darker, behind the body
    capsule(cv, cx, hip_y, cx, w.sh_y, 0.038 * s, shirt)
    _walker_limbs(cv, w, 0, pants, shirt)
    circle(cv, cx + 0.01 * d * s, w.sh_y - 0.13 * tall, 0.09 * tall, hsv_rgb(0.07, 0.4, 0.85))
    _landing_dust(cv, src, w)


def _landing_dust(cv: Canvas, src: Source, w: _Walker) -> None:
    """Two puffs of dust beside the foot that lands, on the step's frame and the next."""
    age, which = event_age(cv, src.events)
    dust = np.flatnonzero(age < 1.5 / cv.fps)
    if dust.size == 0:
        return
    foot = which[dust] % 2
    px = w.hip_x[dust] + w.fx[foot, dust] + 0.05 * w.s * np.array([[-1.0], [1.0]])  # (2, n)
    alpha = np.tile(0.7 - 0.3 * np.round(age[dust] * cv.fps), 2)
    f = np.tile(dust, 2)
    _dots(
        cv, f, px.ravel(), np.full(f.size, w.feet - 0.01 * w.s), max(MIN_PX, 0.02 * w.s), hsv_rgb(0.1, 0.25, 0.8), alpha
    )


# --------------------------------------------------------------------------- tonal


def _pick_offset(cv: Canvas, events, rest: float, down: float) -> np.ndarray:
    """Vertical offset (F,) of the pick from the string: resting above, touching it on the event's frame,
    flicking through it right after, then lifting back."""
    dt, _ = nearest_event(cv, events)
    since = np.where(dt >= 0, dt, np.inf)
    until = np.where(dt < 0, -dt, np.inf)
    y = np.full(cv.F, rest)
    y = np.where(since < 0.1, down * since / 0.1, y)
    y = np.where((since >= 0.1) & (since < 0.3), down + (rest - down) * (since - 0.1) / 0.2, y)
    return np.where(until < 0.15, rest * until / 0.15, y)


def _draw_string(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """A string over a wooden board, plucked on each event's frame and vibrating for ~0.6 s."""
    cx, cy, s = source_place(cv, src)
    hue = float(src.params.get("hue", 0.5))
    length = 0.56 * s
    xl, xr = cx - length / 2, cx + length / 2
    board_y = cy + 0.11 * s  # the board's top lies 0.04 s under the string: room to vibrate
    rect(cv, cx, board_y, 0.34 * s, 0.07 * s, _block_shader("wood", board_y, 0.07 * s, hue, s), rad=0.03 * s)
    circle(cv, cx - 0.05 * s, board_y, 0.03 * s, INK)
    for px in (xl, xr):  # pegs standing on the board
        rect(cv, px, cy + 0.02 * s, 0.012 * s, 0.03 * s, INK)
    age, which = event_age(cv, src.events)
    note = float(src.params.get("note_hz", 196.0))
    f_vis = cv.hz(6.0 + 4.0 * (note - 110.0) / 184.0)  # higher notes visibly faster, never aliasing
    since = np.where(np.isfinite(age), age, 0.0)
    ring = np.isfinite(age) * np.exp(-since / 0.2) * np.cos(2 * np.pi * f_vis * since)  # decays within ~0.6 s
    amp = (0.055 * s * event_gains(src, which) * ring).astype(np.float32)  # (F,) mid-string displacement, pixels
    thick = max(MIN_PX, 0.008 * s)
    amp_f, xl_f = _pf(cv, amp, xl)
    env = np.abs(amp_f) + thick

    def shape(sl, xs):
        return np.sin(np.pi * np.clip((xs - xl_f[sl, None, None]) / length, 0, 1))

    def blur(sl, xs):
        return cy, np.abs(amp_f[sl, None, None]) * shape(sl, xs) + thick

    def string(sl, xs):
        return cy + amp_f[sl, None, None] * shape(sl, xs), thick

    wire = hsv_rgb(0.13, 0.25, 0.95)
    vib = np.abs(amp) > 0.3
    _yband(cv, xl, xr, cy - env, cy + env, blur, wire, alpha=0.3, on=vib)
    _yband(cv, xl, xr, cy - env, cy + env, string, wire)
    py = cy + _pick_offset(cv, src.events, -0.08 * s, 0.05 * s)
    pxx = xl + 0.72 * length
    vx = np.stack([pxx - 0.025 * s, pxx + 0.025 * s, pxx], 1)
    vy = np.stack([py - 0.055 * s, py - 0.055 * s, py], 1)
    _poly(cv, vx, vy, hsv_rgb(hue, 0.8, 0.9))


def _swing(cv: Canvas, events, first_side: float, amp: float) -> tuple[np.ndarray, np.ndarray]:
    """Bell angle (F,) reaching an alternating extreme at each event, and the side (+-1) of every event.

    Between events it swings a half cosine from one extreme to the other; before the first it winds up
    from rest; after the last it dies away.
    """
    ev = np.asarray(events, np.float64)
    sides = first_side * (-1.0) ** np.arange(ev.size)
    if ev.size == 0:
        return np.zeros(cv.F), sides
    t = _snap(cv, ev)
    gaps = np.diff(ev)
    t_in, t_out = (gaps[0], gaps[-1]) if ev.size > 1 else (1.2, 1.2)
    i = np.searchsorted(ev, t, side="right")
    th = np.zeros(cv.F)
    pre, mid, post = i == 0, (i > 0) & (i < ev.size), i == ev.size
    lead = ev[0] - t[pre]
    th[pre] = sides[0] * amp * np.clip(1 - lead / (2 * t_in), 0, 1) * np.cos(np.pi * lead / t_in)
    a, b = ev[i[mid] - 1], ev[i[mid]]
    th[mid] = sides[i[mid] - 1] * amp * np.cos(np.pi * (t[mid] - a) / (b - a))
    lag = t[post] - ev[-1]
    th[post] = sides[-1] * amp * np.cos(np.pi * lag / t_out) * np.exp(-lag / (1.5 * t_out))
    return th, sides


def _draw_bell(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Golden bell under a beam, at a swing extreme (alternating sides) on each strike, with a flash at the rim."""
    cx, cy, s = source_place(cv, src)
    hue = float(src.params.get("hue", 0.5))
    pvx, pvy = cx, cy - 0.17 * s
    wood = hsv_rgb(0.07, 0.55, 0.3)
    base = floor_of(cv, cy, s, 0.2)
    for side in (-1, 1):
        rect(cv, cx + side * 0.22 * s, 0.5 * (pvy + base), 0.015 * s, 0.5 * (base - pvy), wood)
    rect(cv, cx, pvy - 0.02 * s, 0.25 * s, 0.02 * s, wood * 1.2)
    th, sides = _swing(cv, src.events, float(rng.choice([-1.0, 1.0])), 0.45)
    gold = hsv_rgb(0.12 + 0.06 * (hue - 0.5), 0.75, 0.88)

    def at(a, b):
        return _rot(pvx, pvy, th, a * s, b * s)

    rect(cv, *at(0, 0.02), 0.02 * s, 0.02 * s, INK, ang=th)
    ellipse(cv, *at(0, 0.085), 0.065 * s, 0.06 * s, gold, ang=th)
    corners = [at(-0.062, 0.085), at(0.062, 0.085), at(0.135, 0.21), at(-0.135, 0.21)]
    _poly(cv, np.stack([c[0] for c in corners], 1), np.stack([c[1] for c in corners], 1), gold)
    capsule(cv, *at(-0.05, 0.1), *at(-0.095, 0.19), 0.012 * s, WHITE, alpha=0.45)  # sheen
    ellipse(cv, *at(0, 0.21), 0.14 * s, 0.022 * s, gold * 0.75, ang=th)
    dt, j = nearest_event(cv, src.events)
    hit = np.exp(-np.abs(dt) / 0.05) * (sides[j] if sides.size else 0.0)  # the clapper flies out to the rim
    circle(cv, *_rot(pvx, pvy, th + 0.5 * hit, 0.0, 0.235 * s), 0.028 * s, INK)  # hangs just below the lip
    age, which = event_age(cv, src.events)
    side = np.where(which >= 0, sides[np.maximum(which, 0)] if sides.size else 0.0, 0.0)
    flash = np.where(age < 0.1, 0.95 * (1 - age / 0.1), 0.0)
    fx, fy = _rot(pvx, pvy, th, side * 0.14 * s, 0.2 * s)
    circle(cv, fx, fy, 0.05 * s, hsv_rgb(0.14, 0.3, 1.0), alpha=flash, on=flash > 0)


# --------------------------------------------------------------------------- creatures


def _chirp_frames(cv: Canvas, events, dur: float) -> tuple[np.ndarray, np.ndarray]:
    """Mask (F,) of frames inside a call (event frame to event + dur, at least one frame) and frames since its start."""
    age, _ = event_age(cv, events)
    n = np.round(age * cv.fps)
    return n < max(1, round(dur * cv.fps)), np.where(np.isfinite(n), n, -1)


def _draw_bird(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Small bird perched on a branch; its beak opens and its wings flap during each chirp."""
    cx, cy, s = source_place(cv, src)
    hue = float(src.params.get("hue", 0.5))
    face = float(rng.choice([-1.0, 1.0]))
    capsule(cv, cx - 0.3 * s, cy + 0.075 * s, cx + 0.3 * s, cy + 0.09 * s, 0.013 * s, hsv_rgb(0.07, 0.5, 0.3))
    sing, n = _chirp_frames(cv, src.events, 0.15)
    up = np.where(sing, np.where(n % 2 == 0, 1.0, 0.45), 0.0)  # wing up on the chirp's first frame
    opened = sing.astype(np.float32)
    plum = hsv_rgb(hue, 0.65, 0.75)
    for k in (-1, 1):
        capsule(cv, cx + k * 0.02 * s, cy + 0.03 * s, cx + k * 0.025 * s, cy + 0.075 * s, 0.006 * s, INK)
    _poly(cv, *_facing(cx, cy, face, s, [(-0.06, -0.01), (-0.06, 0.02), (-0.17, 0.05)]), plum * 0.7)  # tail
    ellipse(cv, cx, cy, 0.08 * s, 0.05 * s, plum, ang=face * 0.25)
    ellipse(cv, cx + face * 0.02 * s, cy + 0.018 * s, 0.05 * s, 0.028 * s, hsv_rgb(hue + 0.05, 0.25, 0.92))
    hx, hy = cx + face * 0.065 * s, cy - 0.045 * s - 0.01 * s * opened
    circle(cv, hx, hy, 0.038 * s, plum)
    circle(cv, hx + face * 0.013 * s, hy - 0.008 * s, max(0.5, 0.009 * s), INK)
    bx = hx + face * 0.03 * s
    beak = hsv_rgb(0.1, 0.85, 0.95)
    upper = ([bx, bx, hx + face * 0.08 * s], [hy - 0.012 * s, hy + 0.002 * s, hy - 0.002 * s - 0.02 * s * opened])
    lower = ([bx, bx, hx + face * 0.072 * s], [hy + 0.002 * s, hy + 0.013 * s, hy + 0.006 * s + 0.03 * s * opened])
    for vx, vy in (upper, lower):
        _poly(cv, np.stack(np.broadcast_arrays(*vx), 1), np.stack(np.broadcast_arrays(*vy), 1), beak)
    beta = 0.15 + 1.2 * up  # wing elevation above horizontal
    wx, wy = cx + face * 0.01 * s - face * 0.045 * s * np.cos(beta), cy - 0.01 * s - 0.045 * s * np.sin(beta)
    ellipse(cv, wx, wy, 0.06 * s, 0.022 * s, plum * 0.6, ang=-face * beta)


def _draw_cricket(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Green cricket on a leaf; its wings lift and vibrate (with a blur) for each 0.25 s chirp."""
    cx, cy, s = source_place(cv, src)
    hue = float(src.params.get("hue", 0.5))
    face = float(rng.choice([-1.0, 1.0]))
    leaf = hsv_rgb(0.36 + 0.05 * (hue - 0.5), 0.55, 0.3)  # darker, bluer green than the bug
    ellipse(cv, cx, cy + 0.05 * s, 0.25 * s, 0.045 * s, leaf, ang=0.05 * face)
    capsule(cv, cx - 0.22 * s, cy + 0.05 * s, cx + 0.22 * s, cy + 0.05 * s, 0.004 * s, leaf * 1.4)
    body = hsv_rgb(0.22 + 0.06 * (hue - 0.5), 0.8, 0.75)
    hx, hy = cx + face * 0.1 * s, cy - 0.005 * s
    for tip in ((0.13, -0.13), (0.04, -0.16)):  # long antennae
        capsule(cv, hx, hy - 0.02 * s, hx + face * tip[0] * s, hy + tip[1] * s, 0.004 * s, body * 0.6)
    for k in (-0.04, 0.03):  # front legs
        capsule(cv, cx + face * k * s, cy, cx + face * (k + 0.02) * s, cy + 0.04 * s, 0.006 * s, body * 0.7)
    ellipse(cv, cx, cy, 0.1 * s, 0.032 * s, body)
    circle(cv, hx, hy, 0.03 * s, body * 0.8)
    kx, ky = cx - face * 0.08 * s, cy - 0.065 * s  # hind leg knee, high like a grasshopper's
    capsule(cv, cx - face * 0.02 * s, cy, kx, ky, 0.012 * s, body * 0.85)
    capsule(cv, kx, ky, cx - face * 0.15 * s, cy + 0.035 * s, 0.007 * s, body * 0.7)
    sing, n = _chirp_frames(cv, src.events, 0.25)
    beta = np.where(sing, 0.4 + 0.2 * np.where(n % 2 == 0, 1.0, -1.0), 0.05)  # alternates every frame
    ax, ay = cx + face * 0.05 * s, cy - 0.02 * s
    wx, wy = ax - face * 0.07 * s * np.cos(beta), ay - 0.07 * s * np.sin(beta)
    wing = hsv_rgb(0.16, 0.6, 0.45)
    bx, by = ax - face * 0.07 * s * np.cos(0.4), ay - 0.07 * s * np.sin(0.4)  # the wings' blur while they buzz
    ellipse(cv, bx, by, 0.085 * s, 0.05 * s, hsv_rgb(0.22, 0.2, 0.9), ang=-face * 0.4, alpha=0.35, on=sing)
    ellipse(cv, wx, wy, 0.075 * s, 0.022 * s, wing, ang=-face * beta)


# --------------------------------------------------------------------------- moving


def _road_shader(color: np.ndarray, mid: float, dash: float, half: float):
    """Asphalt with a dashed centre line."""
    line = hsv_rgb(0.13, 0.2, 0.9)

    def shade(sl, xs, ys):
        on = (np.mod(xs, 2 * dash) < dash) & (np.abs(ys - mid) < half)
        return np.where(on[None], line[:, None, None, None], color[:, None, None, None])

    shade.static = True
    return shade


def _draw_car(cv: Canvas, src: Source, rng: np.random.Generator) -> None:
    """Car of a random colour driving across a road with rolling wheels; larger when closer.

    The car does not stop at t_end: it keeps its speed, so it drives out of the frame instead of parking
    at its last position (x beyond +-1.4 is outside the picture either way).
    """
    s = cv.S * src.size
    cy = src.y * cv.H  # wheel centres
    span = max(src.t_end - src.t_start, 1e-6)
    cx = cv.col(src.x0 + (src.x1 - src.x0) * (cv.t - src.t_start) / span)
    d = 1.0 if src.x1 >= src.x0 else -1.0
    rw = 0.05 * s
    road_top, road_bot = cy + rw - 0.03 * s, min(cv.H + 1.0, cy + rw + 0.08 * s)
    road = _road_shader(hsv_rgb(0.0, 0.0, 0.3), 0.5 * (road_top + road_bot) + 0.01 * s, 0.06 * s, max(0.6, 0.006 * s))
    rect(cv, cv.W / 2, 0.5 * (road_top + road_bot), cv.W / 2 + 2, 0.5 * (road_bot - road_top), road)
    paint = hsv_rgb(src.params.get("hue", 0.0), 0.75, 0.8)
    ellipse(cv, cx, cy + rw, 0.24 * s, 0.02 * s, INK, alpha=0.35)  # shadow
    cabin = [(-0.14, -0.085), (0.09, -0.085), (0.03, -0.15), (-0.11, -0.15)]  # (forward, down) in units of s
    _poly(cv, *_facing(cx, cy, d, s, cabin), paint * 0.85)
    window = [(-0.12, -0.088), (0.07, -0.088), (0.022, -0.138), (-0.1, -0.138)]
    _poly(cv, *_facing(cx, cy, d, s, window), hsv_rgb(0.55, 0.3, 0.85))
    rect(cv, cx, cy - 0.045 * s, 0.21 * s, 0.045 * s, paint, rad=0.02 * s)
    ellipse(cv, cx + d * 0.2 * s, cy - 0.055 * s, 0.015 * s, 0.012 * s, hsv_rgb(0.15, 0.6, 1.0))
    ellipse(cv, cx - d * 0.205 * s, cy - 0.055 * s, 0.01 * s, 0.012 * s, hsv_rgb(0.0, 0.9, 0.8))
    roll = (cx - cx[0]) / rw  # wheel angle, radians (rolling without slipping)
    for wx in (cx - 0.13 * s, cx + 0.13 * s):
        circle(cv, wx, cy, rw, INK)
        circle(cv, wx, cy, 0.5 * rw, hsv_rgb(0, 0, 0.6))
        for k in (0.0, np.pi / 2):
            c, sn = 0.45 * rw * np.cos(roll + k), 0.45 * rw * np.sin(roll + k)
            capsule(cv, wx - c, cy - sn, wx + c, cy + sn, 0.07 * rw, INK)


# --------------------------------------------------------------------------- entry point

_DRAW = {
    "wood_knock": _draw_impact,
    "metal_clang": _draw_impact,
    "glass_clink": _draw_impact,
    "stone_hit": _draw_impact,
    "rain": _draw_rain,
    "wind": _draw_wind,
    "water_stream": _draw_water,
    "fire": _draw_fire,
    "clock_tick": _draw_clock,
    "engine_idle": _draw_engine,
    "footsteps": _draw_footsteps,
    "plucked_string": _draw_string,
    "bell": _draw_bell,
    "bird_chirp": _draw_bird,
    "cricket": _draw_cricket,
    "car_pass": _draw_car,
}


def render_frames(scene: Scene) -> np.ndarray:
    """Render every frame of a scene: (F, H, W, 3) uint8, frame k showing time k / fps.

    Deterministic for a scene: all randomness comes from ``background["tex_seed"]`` and the source's
    position in the scene. Off-screen sources are heard, not drawn; nearer (larger) sources are drawn last.
    """
    unknown = [s.cls for s in scene.sources if s.cls not in _DRAW]
    if unknown:
        raise ValueError(f"cannot draw classes {unknown}; known: {sorted(_DRAW)}")
    cfg = scene.config
    bg = scene.background or {}
    cv = Canvas(cfg, float(bg.get("ground", 0.8)))
    cv.img[:] = np.ascontiguousarray(draw_background(cv, bg) + 0.5, np.uint8)  # static (H, W, 3), broadcast over F
    seed = int(bg.get("tex_seed", 0))
    order = sorted(range(len(scene.sources)), key=lambda i: scene.sources[i].size)
    for i in order:
        src = scene.sources[i]
        if not src.offscreen:
            _DRAW[src.cls](cv, src, np.random.default_rng([seed, i]))
    return cv.img
