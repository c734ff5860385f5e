"""Video: how much the alignment of a face jitters from frame to frame, with and without
``fsggan-deocclude``'s landmark smoothing, and the frames per second of the whole video path.

A clip is made here from one LFW photo (``../shared/data/lfw`` or ``$FSGGAN_DATA/lfw``) with a
dark bar over the mouth: the photo drifts by a pixel and grows by 0.2 % a frame on a larger grey
canvas, as a hand-held camera would. The default detector (MTCNN) finds the face in every frame;
jitter is :func:`fsggan.photos.video.alignment_jitter` (the landmarks' frame-to-frame change
around the face's own motion, in eye distances) of the raw and of the smoothed landmarks. With
``--gan`` the clip is also de-occluded end to end and timed, for each smoothing.

    python -m benchmarks.video_jitter --gan runs/cpu_gan128 [--frames 48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(photo: np.ndarray, path: Path, frames: int, rate: int = 25) -> list[np.ndarray]:
    """Write the drifting clip (H.264 or MPEG-4) and return its frames as written."""
    import av
    from PIL import Image

    out_frames = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 400, 320, "yuv420p"
        for k in range(frames):
            side = int(round(250 * (1 + 0.002 * k)))
            face = np.asarray(Image.fromarray(photo).resize((side, side), Image.BICUBIC))
            canvas = np.full((320, 400, 3), 128, np.uint8)
            x, y = 60 + k, 30 + k // 2
            canvas[y:y + side, x:x + side] = face[: 320 - y, : 400 - x]
            out_frames.append(canvas)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode(None))
    return out_frames


def main() -> None:
    from fsggan.datadir import data_root
    from fsggan.photos.deocclude import face_finder
    from fsggan.photos.video import FaceTracks, alignment_jitter, deocclude_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan", default=None, help="a Stage II run or checkpoint: also time the video path")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--photo", default=None, help="an LFW photo (default: the first of Aaron_Peirsol)")
    args = ap.parse_args()
    from fsggan.images import read_rgb

    photo_path = Path(args.photo or data_root() / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    photo = read_rgb(photo_path)[0].copy()
    photo[150:178, 90:160] = 30                                   # a dark bar over the mouth
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        decoded = make_clip(photo, clip, args.frames)
        detect = face_finder(None, 20)
        for smooth in (0.0, 0.6):
            tracks = FaceTracks(detect, smooth)
            lms = [faces[0].landmarks for faces in map(tracks, decoded) if faces]
            print(f"smooth {smooth}: alignment jitter {alignment_jitter(lms):.4f} eye distances per frame "
                  f"(face found in {len(lms)} of {len(decoded)} frames)")
        if args.gan:
            from fsggan.api import FSGGAN

            model = FSGGAN.from_checkpoints(gan=args.gan, device="cpu")
            for smooth in (0.0, 0.6):
                t0 = time.perf_counter()
                s = deocclude_video(model, clip, Path(tmp) / f"out{smooth}.mp4", detect=detect, smooth=smooth,
                                    progress=False)
                dt = time.perf_counter() - t0
                print(f"smooth {smooth}: {s.frames} frames in {dt:.1f} s = {s.frames / dt:.1f} frames/s "
                      f"({s.faces} faces, audio {s.audio})")


if __name__ == "__main__":
    main()
