"""A small PNG reader and writer (zlib + numpy), so the browser test needs no imaging library.

Reads 8-bit RGB/RGBA/grey, non-interlaced: what Chromium writes for a screenshot.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def read_png(path: str | Path) -> np.ndarray:
    """(height, width, channels) uint8."""
    data = Path(path).read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced PNGs are read (found depth {depth}, colour {colour})")
    bpp = _CHANNELS[colour]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:      # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 255
        elif kind == 2:      # Up
            row = (line + prev) & 255
        elif kind == 3:      # Average: depends on the reconstructed left pixel, so byte by byte
            row = _unfilter_average(line, prev, bpp)
        elif kind == 4:      # Paeth: the same
            row = _unfilter_paeth(line, prev, bpp)
        else:
            raise ValueError(f"{path}: unknown PNG filter {kind} on row {y}")
        out[y] = row
        prev = row
    return out.reshape(height, width, bpp)


def _unfilter_average(line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur, up = line.tolist(), prev.tolist()
    for i in range(len(cur)):
        cur[i] = (cur[i] + (((cur[i - bpp] if i >= bpp else 0) + up[i]) >> 1)) & 255
    return np.asarray(cur, dtype=np.int32)


def _unfilter_paeth(line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur, up = line.tolist(), prev.tolist()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return np.asarray(cur, dtype=np.int32)


def write_png(path: str | Path, pixels: np.ndarray) -> None:
    """Write (height, width, 3 or 4) uint8 without filtering."""
    height, width, bpp = pixels.shape
    colour = {3: 2, 4: 6}[bpp]
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    Path(path).write_bytes(
        _SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")
    )


def non_white_fraction(pixels: np.ndarray, *, threshold: int = 245) -> float:
    """Share of pixels whose colour is visibly not white (any of R, G, B below `threshold`)."""
    rgb = pixels[..., :3] if pixels.shape[-1] >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    return float((rgb < threshold).any(axis=-1).mean())
