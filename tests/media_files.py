"""Animations and videos made in the tests (Pillow and PyAV), including hostile ones, for issue 10."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import av
from PIL import Image

from worker.standin.palette import PALETTE

RGB = tuple[int, int, int]
GREY = PALETTE["NA"]  # the stand-in's Safe colour
RED = PALETTE["O1"]  # Unsafe, O1


def gif(count: int, colour_of: Callable[[int], RGB], size: tuple[int, int] = (64, 64), duration_ms: int = 100) -> bytes:
    """An animated GIF; a dark pixel moves one step per frame, so Pillow's writer keeps every frame (it merges
    identical neighbours), while the frames stay near-identical to the eye (and to the sampler)."""
    frames = []
    for index in range(count):
        frame = Image.new("RGB", size, colour_of(index))
        frame.putpixel((index % size[0], (index // size[0]) % size[1]), (0, 0, 0))
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def video(
    seconds: float, colour_at: Callable[[float], RGB], *, fps: int = 5, size: tuple[int, int] = (64, 64),
    codec: str = "libx264", container: str = "mp4",
) -> bytes:
    """A video encoded in memory: frame i shows `colour_at(i / fps)`."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, colour_at(index / fps)))
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def million_frame_gif(frames: int = 1_000_000) -> bytes:
    """A 1x1 GIF of `frames` frames, 15 bytes each (no header claims a count: it must be decoded to know)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + loop + frame * frames + b"\x3b"


def lying_duration(mp4: bytes) -> bytes:
    """`mp4` with every declared duration (mvhd, tkhd, mdhd) set to 1 tick: the header claims a blink."""
    data = bytearray(mp4)
    for box, offset in ((b"mvhd", 16), (b"tkhd", 20), (b"mdhd", 16)):
        at = data.find(box)
        assert at > 0 and data[at + 4] == 0, f"{box!r} missing or not version 0"
        data[at + 4 + offset:at + 8 + offset] = struct.pack(">I", 1)
    return bytes(data)


def apng_declaring(frames: int) -> bytes:
    """A two-frame APNG whose `acTL` chunk claims `frames` frames."""
    first, second = Image.new("RGB", (8, 8), GREY), Image.new("RGB", (8, 8), RED)
    buffer = io.BytesIO()
    first.save(buffer, "PNG", save_all=True, append_images=[second])
    data = bytearray(buffer.getvalue())
    at = data.find(b"acTL")
    body = struct.pack(">II", frames, 0)
    data[at + 4:at + 12] = body
    data[at + 12:at + 16] = struct.pack(">I", zlib.crc32(b"acTL" + body))
    return bytes(data)


def without_samples(mp4: bytes) -> bytes:
    """`mp4` whose sample table lists no sample: a video track with 0 frames."""
    data = bytearray(mp4)
    at = data.find(b"stsz")
    data[at + 12:at + 16] = struct.pack(">I", 0)
    return bytes(data)
