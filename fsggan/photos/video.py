"""A video in, the video with its faces de-occluded out (``fsggan-deocclude clip.mp4 --out out.mp4``).

Every frame is a photo (:func:`fsggan.photos.deocclude.deocclude_photos`: faces found,
aligned, de-occluded and pasted back), ``frames`` frames at a time so that all their faces go
through the model in batches. Decoding and encoding are PyAV's (FFmpeg; ``pip install av``):
the video stream is re-encoded with H.264 (``libx264``, CRF 18, or MPEG-4 Part 2 where the
FFmpeg build has no H.264 encoder) at the input's frame rate and size, each frame keeping its
time stamp; the first audio stream is copied as it is (not re-encoded) where the output
container takes its codec, else left out with a note. A rotation flag (the display matrix of a
clip filmed on a phone held upright) is applied: the frames are de-occluded and written as they are
shown, upright, and the output carries no flag (:func:`display_turns`). The file is written whole
or not at all (a temporary file next to it, then a rename).

Faces are followed from frame to frame (:class:`FaceTracks`): a detection is the same face as
the previous frame's nearest one when their landmark centres are closer than half the eye
distance; its five landmarks are then an exponential average over the frames (``smooth``: the
weight of the past), so that the alignment, and the paste back, does not jitter with the
detector's noise. A face that moved more than ``follow`` of its eye distance since the last
frame starts afresh (the average would lag behind a real movement).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsggan.detect.base import DetectedFace

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "VideoSummary", "FaceTracks", "alignment_jitter", "is_video",
           "display_turns", "deocclude_video"]

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
    turned: int = 0       # degrees counter-clockwise the frames were turned to stand upright


class FaceTracks:
    """A face detector for a video's frames, called in frame order: each face followed from the
    previous frame and its landmarks smoothed (module docstring). ``smooth`` 0 leaves the
    detector's landmarks as they are."""

    def __init__(self, detect: Callable, smooth: float = 0.6, follow: float = 0.25):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {smooth}")
        self.detect, self.smooth, self.follow = detect, float(smooth), float(follow)
        self.previous: list[np.ndarray] = []   # the last frame's smoothed landmarks, one (5, 2) per face

    def __call__(self, frame) -> list:
        faces, now = self.detect(frame), []
        for det in faces:
            lm = np.asarray(det.landmarks, np.float64).reshape(5, 2)
            past = self._match(lm)
            if past is not None:
                moved = np.linalg.norm(lm.mean(0) - past.mean(0)) / _eye_distance(lm)
                if moved <= self.follow:
                    lm = self.smooth * past + (1.0 - self.smooth) * lm
            now.append(lm)
        self.previous = now
        return [DetectedFace(box=tuple(det.box), landmarks=lm.astype(np.float32), score=float(det.score))
                for det, lm in zip(faces, now)]

    def _match(self, lm: np.ndarray) -> np.ndarray | None:
        """The previous frame's face nearest to ``lm``, if closer than half the eye distance."""
        if not self.previous:
            return None
        gaps = [np.linalg.norm(lm.mean(0) - p.mean(0)) for p in self.previous]
        k = int(np.argmin(gaps))
        return self.previous[k] if gaps[k] < 0.5 * _eye_distance(lm) else None


def _eye_distance(lm: np.ndarray) -> float:
    return max(float(np.linalg.norm(lm[1] - lm[0])), 1.0)


def alignment_jitter(landmarks: list[np.ndarray]) -> float:
    """Frame-to-frame jitter of one face's alignment: the mean change of its five landmarks
    between consecutive frames, after removing the face's own motion (the change of their
    centre, averaged over three frames), in units of the eye distance."""
    lms = np.stack([np.asarray(m, np.float64).reshape(5, 2) for m in landmarks])
    if len(lms) < 3:
        return 0.0
    centre = lms.mean(1, keepdims=True)
    trend = (centre[:-2] + centre[1:-1] + centre[2:]) / 3.0
    shape = lms[1:-1] - trend                    # landmarks around the smoothed centre
    step = np.linalg.norm(np.diff(shape, axis=0), axis=2).mean()
    return float(step / np.mean([_eye_distance(m) for m in lms]))


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError:
        raise VideoError("videos need PyAV: pip install 'fsggan[video]' (or pip install av)") from None
    return av


def display_turns(av, src: Path) -> int:
    """Quarter turns counter-clockwise (0-3) that show ``src``'s frames upright: its display
    matrix, as FFmpeg gives it with the first frame (``VideoFrame.rotation``, counter-clockwise
    degrees); 0 where there is none, or where PyAV is too old to read it."""
    with av.open(str(src)) as container:
        for frame in container.decode(video=0):
            return round(getattr(frame, "rotation", 0) / 90) % 4
    return 0


def _open_output(av, tmp: Path, dst: Path, src_video, turns: int):
    """The output container and its video stream (the rate of ``src_video``, its size as shown:
    width and height swapped when ``turns`` is odd)."""
    out = av.open(str(tmp), mode="w", format=VIDEO_EXTENSIONS[dst.suffix.lower()])
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = src_video.average_rate or src_video.guessed_rate or 25
    stream = out.add_stream(codec, rate=rate)
    stream.width, stream.height = src_video.codec_context.width, src_video.codec_context.height
    if turns % 2:
        stream.width, stream.height = stream.height, stream.width
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
        turns = self.summary.turned // 90
        results = self.run([np.ascontiguousarray(np.rot90(f.to_ndarray(format="rgb24"), turns)) for f in self.pending])
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
                    batch_size: int = 32, keep_detail: bool = True, progress: bool = True,
                    smooth: float = 0.6) -> VideoSummary:
    """Write ``dst``: ``src`` with every frame's faces de-occluded, each face followed and its
    landmarks smoothed over time (``smooth``; module docstring)."""
    from tqdm import tqdm

    from .deocclude import deocclude_photos

    av, src, dst = _av(), Path(src), Path(dst)
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoError(f"{dst}: write a video as one of {', '.join(VIDEO_EXTENSIONS)}")
    try:
        container = av.open(str(src))
    except (OSError, av.FFmpegError) as exc:
        raise VideoError(f"{src}: not a readable video ({exc})") from None

    tracks = FaceTracks(detect, smooth)   # frames reach it in order: deocclude_photos detects photo by photo

    def run(photos):
        return deocclude_photos(model, photos, detect=tracks, batch_size=batch_size, keep_detail=keep_detail)

    summary = VideoSummary()
    tmp = dst.with_name(f".{dst.stem}.part{os.getpid()}{dst.suffix}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with container:
            if not container.streams.video:
                raise VideoError(f"{src}: no video stream")
            vin = container.streams.video[0]
            summary.turned = 90 * display_turns(av, src)
            out, vout = _open_output(av, tmp, dst, vin, summary.turned // 90)
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
