"""The user's own occlusion masks (white = occluded): the notebook API on crops and photos,
and fsggan-deocclude --mask, with tiny untrained models (32 px, widths 4). An untrained blend
head's map is about 0.5 everywhere, so without a mask every pixel changes: what stays
unchanged below is the mask's doing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fsggan.masks import MaskError
from fsggan.models import VAE, UNetGenerator
from fsggan.api import FSGGAN
from helpers.training import VAE_KW

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(output: str = "blend") -> FSGGAN:
    torch.manual_seed(0)
    m = FSGGAN(VAE(**VAE_KW), UNetGenerator(base_channels=4, output=output), device="cpu", image_size=32)
    m.data = {"dataset": {"kind": "lfw", "crop": None}}
    return m


def crops_and_mask(n: int = 3):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    mask = np.zeros((n, 32, 32), np.uint8)
    mask[:, 12:24, 8:26] = 255
    mask[1, :4, :4] = 255  # masks differ per image
    return crops, mask


@pytest.mark.parametrize("output", ["blend", "direct"])
def test_replace_keeps_every_pixel_outside_the_mask_to_the_bit(output):
    model = tiny(output)
    crops, mask = crops_and_mask()
    out = model.deocclude(crops, mask=mask)
    outside, inside = mask == 0, mask > 0
    assert np.array_equal(out[outside], crops[outside])
    assert (out[inside] != crops[inside]).any(-1).mean() > 0.9  # G filled the mask
    plain = model.deocclude(crops)
    assert (plain[outside] != crops[outside]).any(-1).mean() > 0.5  # without it, G changes the rest too


def test_union_is_the_mask_filled_and_g_own_map_elsewhere():
    model = tiny()
    crops, mask = crops_and_mask()
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    fill = torch.from_numpy(mask).float().unsqueeze(1) / 255
    union, _ = model.run(x, fill, "union")
    replace, _ = model.run(x, fill, "replace")
    plain, _ = model.run(x)
    assert torch.equal(union, torch.where(fill > 0, replace, plain))
    # the tensor API takes the same masks as (B, 1, H, W) floats, and one mask for the batch
    assert torch.equal(model.deocclude(x, mask=fill, mask_mode="union"), union)
    one = model.deocclude(x, mask=fill[0, 0])
    assert torch.equal(one[0], replace[0])


def test_bad_masks_are_one_line_errors():
    model = tiny()
    crops, mask = crops_and_mask()
    with pytest.raises(MaskError, match=r"mask of shape \(3, 16, 16\): expected the images' size 32x32"):
        model.deocclude(crops, mask=mask[:, :16, :16])
    with pytest.raises(MaskError, match="2 masks for 3 images"):
        model.deocclude(crops, mask=mask[:2])
    with pytest.raises(MaskError, match=r"mask values lie in \[0, 2\]"):
        model.deocclude(crops, mask=mask.astype(np.float32) / 127.5)
    with pytest.raises(ValueError, match="mask_mode must be one of"):
        model.deocclude(crops, mask=mask, mask_mode="intersect")


def test_photo_mask_is_warped_with_the_face_and_the_rest_of_the_photo_is_kept():
    from scipy.ndimage import binary_dilation

    from helpers.photos import lfw, occluded, stub_detect

    model = tiny()
    photo = occluded(lfw())
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[140:175, 105:145] = 255  # part of the occluder over the mouth
    out, faces = model.deocclude_photo(photo, mask=mask, detect=stub_detect)
    plain, _ = model.deocclude_photo(photo, detect=stub_detect)
    assert faces[0].mask is not None and faces[0].mask.max() == 1.0 and faces[0].mask.min() == 0.0
    # the crop is 128 photo px for 32 crop px (4x); the warps and keep_detail's blurred change
    # weight reach a few crop px past the mask (the last changed pixel here: 13-16 photo px out)
    far = ~binary_dilation(mask > 0, iterations=20)
    assert np.array_equal(out[far], photo[far])
    assert (plain[far] != photo[far]).any(-1).mean() > 0.1  # without the mask, the face there changes
    assert (out[mask > 0] != photo[mask > 0]).any(-1).mean() > 0.9
    scaled = np.asarray(Image.fromarray(mask).resize((125, 125), Image.Resampling.NEAREST))
    again, _ = model.deocclude_photo(photo, mask=scaled, detect=stub_detect)  # a scaled copy: resized
    assert np.array_equal(again[far], photo[far])
    with pytest.raises(MaskError, match=r"masks\[0\]: mask is 250x100, its image 250x250"):
        model.deocclude_photo(photo, mask=mask[:100], detect=stub_detect)


def write_run(path):
    """A Stage II checkpoint of the tiny blend model (LFW-framed, 32 px)."""
    model = tiny()
    torch.save({"version": 1, "step": 1, "models": {"generator": model.generator.state_dict(),
                                                    "vae": model.vae.state_dict()},
                "config": {"generator": {"base_channels": 4, "output": "blend"}, "vae": VAE_KW,
                           "data": {"dataset": {"kind": "lfw", "crop": None}}}}, path)
    return path


def test_cli_mask_for_crops_keeps_the_rest_and_refuses_bad_masks_in_one_line(tmp_path, capsys):
    from fsggan.cli.deocclude import main as deocclude_main

    run = write_run(tmp_path / "gan.pt")
    crops, mask = crops_and_mask()
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir(), masks.mkdir()
    for k in range(3):
        Image.fromarray(crops[k]).save(src / f"face{k}.png")
        Image.fromarray(mask[k]).save(masks / f"face{k}.png")
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", str(run), "--out", str(out), "--aligned", "--mask", str(masks),
                           "--device", "cpu", "--no-progress"]) == 0
    for k in range(3):
        got, keep = np.asarray(Image.open(out / f"face{k}.png")), mask[k] == 0
        assert np.array_equal(got[keep], crops[k][keep]) and not np.array_equal(got, crops[k])
    Image.fromarray(mask[0][:16]).save(masks / "face1.png")
    assert deocclude_main([str(src), "--gan", str(run), "--out", str(tmp_path / "o2"), "--aligned", "--mask",
                           str(masks), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "face1.png: mask is 32x16, its input" in err[0]
    (masks / "face1.png").unlink()
    assert deocclude_main([str(src), "--gan", str(run), "--out", str(tmp_path / "o3"), "--aligned", "--mask",
                           str(masks), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "face1.png: no mask for it in" in err[0]
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_cli_mask_for_photos(tmp_path, monkeypatch):
    from fsggan.cli.deocclude import main as deocclude_main
    from helpers.photos import lfw, occluded, stub_detect

    monkeypatch.setattr("fsggan.photos.deocclude.face_finder", lambda detector, min_face: stub_detect)
    run = write_run(tmp_path / "gan.pt")
    photo = occluded(lfw())
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[140:175, 105:145] = 255
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir(), masks.mkdir()
    Image.fromarray(photo).save(src / "one.png")
    big = np.asarray(Image.fromarray(mask).resize((500, 500), Image.Resampling.NEAREST))  # drawn at 2x: resized
    Image.fromarray(big).save(masks / "one.png")
    out = tmp_path / "out"
    assert deocclude_main([str(src), "--gan", str(run), "--out", str(out), "--mask", str(masks),
                           "--device", "cpu", "--no-progress"]) == 0
    model = tiny()
    want, _ = model.deocclude_photo(photo, mask=big, detect=stub_detect)
    assert np.array_equal(np.asarray(Image.open(out / "one.png")), want)


def test_video_frames_are_deoccluded_with_their_time_stamps(tmp_path, monkeypatch, capsys):
    av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'fsggan[video]')")
    from fsggan.cli.deocclude import main as deocclude_main
    from helpers.photos import lfw, occluded, stub_detect

    monkeypatch.setattr("fsggan.photos.deocclude.face_finder", lambda detector, min_face: stub_detect)
    run = write_run(tmp_path / "gan.pt")
    photo = occluded(lfw())
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 250, 250, "yuv420p"
        for k in range(6):
            frame = av.VideoFrame.from_ndarray(np.roll(photo, k, axis=1).copy(), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    dst = tmp_path / "out" / "clip.mp4"
    assert deocclude_main([str(clip), "--gan", str(run), "--out", str(dst), "--device", "cpu", "--no-progress",
                           "--batch-size", "4"]) == 0
    assert "wrote 6 frame(s) with 6 face(s)" in capsys.readouterr().out
    with av.open(str(clip)) as a, av.open(str(dst)) as b:
        fa, fb = list(a.decode(video=0)), list(b.decode(video=0))
        assert b.streams.video[0].average_rate == 5
    assert len(fb) == 6 and [f.pts * f.time_base for f in fb] == [f.pts * f.time_base for f in fa]
    ins, outs = (np.stack([f.to_ndarray(format="rgb24").astype(np.int16) for f in fs]) for fs in (fa, fb))
    change = np.abs(outs - ins).mean(axis=(0, 3))
    assert change[140:175, 105:145].mean() > 4 * change[:40].mean()  # the face changed, the top rows hardly
    assert deocclude_main([str(clip), "--gan", str(run), "--out", str(tmp_path / "o.mp4"), "--mask", "m"]) == 2
    assert capsys.readouterr().err.strip() == "fsggan-deocclude: error: --mask: not for videos"


def test_a_phone_clip_with_a_rotation_flag_is_deoccluded_upright(tmp_path, monkeypatch, capsys):
    """Stored on its side with a display matrix saying "turn 90 degrees": the faces are found in
    the frames as shown, and the output is written upright, with no flag."""
    av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'fsggan[video]')")
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip(f"PyAV {av.__version__} cannot write a rotation flag (PyAV 18 can)")
    from fsggan.cli.deocclude import main as deocclude_main
    from helpers.photos import lfw, occluded, stub_detect

    monkeypatch.setattr("fsggan.photos.deocclude.face_finder", lambda detector, min_face: stub_detect)
    run = write_run(tmp_path / "gan.pt")
    photo = np.pad(occluded(lfw()), ((0, 0), (0, 30), (0, 0)), constant_values=128)   # 250 high, 280 wide
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 250, 280, "yuv420p"
        stream.set_display_rotation(90)            # shown turned 90 degrees counter-clockwise
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.rot90(photo, -1).copy(), format="rgb24")))
        out.mux(stream.encode(None))
    dst = tmp_path / "out.mp4"
    assert deocclude_main([str(clip), "--gan", str(run), "--out", str(dst), "--device", "cpu", "--no-progress"]) == 0
    assert "3 face(s)" in capsys.readouterr().out
    with av.open(str(dst)) as b:
        frames = list(b.decode(video=0))
    assert len(frames) == 3 and all(getattr(f, "rotation", 0) == 0 for f in frames)
    got = np.stack([f.to_ndarray(format="rgb24").astype(np.int16) for f in frames])
    assert got.shape[1:3] == (250, 280)             # upright: as tall as the photo
    change = np.abs(got - photo.astype(np.int16)).mean(axis=(0, 3))
    assert change[:40].mean() < 6 and change[140:175, 105:145].mean() > 2 * change[:40].mean()   # the face changed


def test_face_tracks_smooth_detector_noise_and_follow_a_real_move():
    from fsggan.detect.base import DetectedFace
    from fsggan.photos.video import FaceTracks, alignment_jitter

    rng = np.random.default_rng(0)
    base = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float64)   # eye distance 40
    truth = [base + [k * 0.5, 0] for k in range(40)] + [base + [100, 0]] * 10         # a slow pan, then a jump
    noisy = [t + rng.normal(0, 1.5, t.shape) for t in truth]
    frames = iter(noisy)

    def detect(_frame):
        lm = next(frames)
        return [DetectedFace(box=(0, 0, 100, 100), landmarks=lm, score=0.99)]

    tracks = FaceTracks(detect, smooth=0.6)
    smoothed = [tracks(None)[0].landmarks.astype(np.float64) for _ in range(50)]
    raw, calm = alignment_jitter(noisy[:40]), alignment_jitter(smoothed[:40])
    assert calm < 0.6 * raw                                   # the detector's noise is damped ...
    err = np.abs(np.stack(smoothed[:40]) - np.stack(truth[:40])).mean()
    assert err < np.abs(np.stack(noisy[:40]) - np.stack(truth[:40])).mean()   # ... closer to the truth
    assert np.abs(smoothed[40] - noisy[40]).max() < 1e-4      # a jump starts afresh: no lag behind it
    assert FaceTracks(detect, smooth=0.0).smooth == 0.0
    with pytest.raises(ValueError, match="smooth"):
        FaceTracks(detect, smooth=1.0)
