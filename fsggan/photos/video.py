"""A video in, the video with its faces de-occluded out (``fsggan-deocclude clip.mp4 --out out.mp4``).

Every frame is a photo (:func:`fsggan.photos.deocclude.deocclude_photos`: faces found,
aligned, de-occluded and pasted back), ``frames`` frames at a time so that all their faces go
through the model in batches. Decoding and encoding are PyAV's (FFmpeg; ``pip install av``):
the video stream is re-encoded with H.264 (``libx264``, CRF 18, or MPEG-4 Part 2 where the
FFmpeg build has no H.264 encoder) at the input's frame rate and size, each frame keeping its
time stamp; the first audio stream is copied as it is (not re-encoded) where the output
container takes its codec, else left out with a note. Frames are read upright as stored (a
rotation flag in the container is not applied). The file is written whole or not at all (a
temporary file next to it, then a rename).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "VideoSummary", "is_video", "deocclude_video"]

# suffix -> FFmpeg container (the formats whose usual codecs include H.264 and MPEG-4)
VIDEO_EXTENSIONS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file and the fix."""


@dataclass
class VideoSummary:
    frames: int = 0
    faces: int = 0
    frames_without_face: int = 0
    audio: str = "none"   # "copied", "none" (the input had none) or why it was left out


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError:
        raise VideoError("videos need PyAV: pip install 'fsggan[video]' (or pip install av)") from None
    return av


def _open_output(av, tmp: Path, dst: Path, src_video):
    """The output container and its video stream (same size and rate as ``src_video``)."""
    out = av.open(str(tmp), mode="w", format=VIDEO_EXTENSIONS[dst.suffix.lower()])
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = src_video.average_rate or src_video.guessed_rate or 25
    stream = out.add_stream(codec, rate=rate)
    stream.width, stream.height = src_video.codec_context.width, src_video.codec_context.height
    even = stream.width % 2 == 0 and stream.height % 2 == 0
    stream.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
    if codec == "libx264":
        stream.options = {"crf": "18"}
    stream.time_base = src_video.time_base
    return out, stream


def _audio_stream(out, src):
    """(input audio stream, output stream) for copying, or (None, reason)."""
    audio = next(iter(src.streams.audio), None)
    if audio is None:
        return None, "none"
    try:
        return audio, out.add_stream_from_template(audio)
    except (ValueError, TypeError, NotImplementedError) as exc:  # the container refuses this codec
        return None, f"left out ({audio.codec_context.name} in {out.format.name}: {exc})"


class _Frames:
    """Frames waiting for the model; ``flush`` de-occludes them and encodes them in order."""

    def __init__(self, av, out, stream, run: Callable, summary: VideoSummary):
        self.av, self.out, self.stream, self.run, self.summary = av, out, stream, run, summary
        self.pending: list = []

    def flush(self) -> None:
        results = self.run([f.to_ndarray(format="rgb24") for f in self.pending])
        for frame, (photo, faces) in zip(self.pending, results):
            new = self.av.VideoFrame.from_ndarray(photo, format="rgb24")
            new.pts, new.time_base = frame.pts, frame.time_base
            self.out.mux(self.stream.encode(new))
            self.summary.frames += 1
            self.summary.faces += len(faces)
            self.summary.frames_without_face += not faces
        self.pending = []


def _convert(av, container, out, vin, vout, run: Callable, frames: int, summary: VideoSummary, bar) -> None:
    """Demux ``container``: video frames through ``run`` into ``vout``, audio packets copied."""
    ain, aout = _audio_stream(out, container)
    summary.audio = aout if isinstance(aout, str) else "copied"
    waiting = _Frames(av, out, vout, run, summary)
    for packet in container.demux(*([vin] + ([ain] if ain is not None else []))):
        if packet.stream is ain:
            if packet.dts is not None:  # the demuxer's empty flush packet has none
                packet.stream = aout
                out.mux(packet)
            continue
        for frame in packet.decode():
            waiting.pending.append(frame)
            if len(waiting.pending) >= frames:
                waiting.flush()
                bar.update(frames)
    bar.update(len(waiting.pending))
    if waiting.pending:
        waiting.flush()
    out.mux(vout.encode(None))  # the encoder's last frames


def deocclude_video(model, src: str | Path, dst: str | Path, *, detect: Callable, frames: int = 8,
                    batch_size: int = 32, keep_detail: bool = True, progress: bool = True) -> VideoSummary:
    """Write ``dst``: ``src`` with every frame's faces de-occluded (module docstring)."""
    from tqdm import tqdm

    from .deocclude import deocclude_photos

    av, src, dst = _av(), Path(src), Path(dst)
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoError(f"{dst}: write a video as one of {', '.join(VIDEO_EXTENSIONS)}")
    try:
        container = av.open(str(src))
    except (OSError, av.FFmpegError) as exc:
        raise VideoError(f"{src}: not a readable video ({exc})") from None

    def run(photos):
        return deocclude_photos(model, photos, detect=detect, batch_size=batch_size, keep_detail=keep_detail)

    summary = VideoSummary()
    tmp = dst.with_name(f".{dst.stem}.part{os.getpid()}{dst.suffix}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with container:
            if not container.streams.video:
                raise VideoError(f"{src}: no video stream")
            vin = container.streams.video[0]
            out, vout = _open_output(av, tmp, dst, vin)
            with out, tqdm(desc="de-occluding frames", unit="frame", disable=not progress) as bar:
                _convert(av, container, out, vin, vout, run, frames, summary, bar)
        os.replace(tmp, dst)
    except av.FFmpegError as exc:
        raise VideoError(f"{src}: could not be converted ({exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    if summary.frames == 0:
        warnings.warn(f"{src}: no frame decoded", stacklevel=2)
    return summary
