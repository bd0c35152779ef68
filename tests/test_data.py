"""Embedded data: deterministic, annotations agree with the pixels, homographies are true."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from xcorr_core.data import (
    ATTRIBUTE_NAMES,
    CLASS_NAMES,
    CUB200,
    PART_NAMES,
    ImageFolder,
    SynthBirds,
    SynthHerd,
    apply_homography,
    homography_from_points,
)
from xcorr_core.data.synth_birds import _COLORS, CLASS_ATTRIBUTES
from xcorr_core.errors import InputError


def test_classes_are_fine_grained() -> None:
    assert len(CLASS_NAMES) >= 20 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    vecs = [tuple(c.values()) for c in CLASS_ATTRIBUTES]
    assert len(set(vecs)) == len(vecs)
    for i, a in enumerate(vecs):  # every class has a sibling that differs in only one or two attributes
        nearest = min(sum(x != y for x, y in zip(a, b)) for j, b in enumerate(vecs) if j != i)
        assert 1 <= nearest <= 2


def test_deterministic_and_prefix_stable() -> None:
    a = SynthBirds("test", per_class=1, progress=False, seed=3)
    b = SynthBirds("test", per_class=2, progress=False, seed=3)
    assert torch.equal(a.images, b.images[: len(a)]) and torch.equal(a.keypoints, b.keypoints[: len(a)])
    c = SynthBirds("test", per_class=1, progress=False, seed=4)
    assert not torch.equal(a.images, c.images)
    train = SynthBirds("train", per_class=1, progress=False, seed=3)
    assert not torch.equal(a.images, train.images)


def test_item_format_and_attributes() -> None:
    ds = SynthBirds("test", per_class=1, progress=False)
    img, label = ds[5]
    assert img.shape == (3, 112, 112) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    assert label == 5 and ds.keypoints.shape == (24, len(PART_NAMES), 3)
    assert ds.attributes.shape == (24, len(ATTRIBUTE_NAMES))
    assert ds.attributes[5].tolist() == list(CLASS_ATTRIBUTES[5].values())


@pytest.mark.parametrize("part, colour", [
    ("eye", lambda a: (0.02, 0.02, 0.02)), ("belly", lambda a: _COLORS[a["belly_color"]]),
    ("beak", lambda a: _COLORS[a["beak_color"]]), ("crown", lambda a: _COLORS[a["crown_color"]]),
    ("leg", lambda a: (0.35, 0.25, 0.15)),
])
def test_visible_keypoints_lie_on_their_part(part: str, colour) -> None:
    ds = SynthBirds("test", per_class=3, progress=False)
    p = PART_NAMES.index(part)
    hits = n = 0
    for i in range(len(ds)):
        x, y, v = ds.keypoints[i, p].tolist()
        if not v:
            continue
        assert 0 <= x < ds.size and 0 <= y < ds.size
        n += 1
        want = torch.tensor(colour(ds.annotations[i].attributes))
        hits += float((ds.image(i)[:, int(y), int(x)] - want).abs().max()) < 0.12
    assert n > 50 and hits / n >= 0.97


def test_boxes_hold_the_keypoints() -> None:
    ds = SynthBirds("test", per_class=2, progress=False)
    kp, box = ds.keypoints, ds.boxes
    vis = kp[..., 2] > 0
    inside = (kp[..., 0] >= box[:, None, 0] - 1) & (kp[..., 0] <= box[:, None, 2] + 1) & \
             (kp[..., 1] >= box[:, None, 1] - 1) & (kp[..., 1] <= box[:, None, 3] + 1)
    assert bool(inside[vis].all())


def test_ood_variants_keep_pose_and_hide_parts() -> None:
    clean = SynthBirds("test", "clean", per_class=2, progress=False)
    sticker = SynthBirds("test", "sticker", per_class=2, progress=False)
    style = SynthBirds("test", "style", per_class=2, progress=False)
    assert torch.equal(clean.keypoints[..., :2], sticker.keypoints[..., :2])
    assert torch.equal(clean.keypoints[..., :2], style.keypoints[..., :2])
    assert not torch.equal(clean.images, sticker.images) and not torch.equal(clean.images, style.images)
    assert (sticker.keypoints[..., 2] <= clean.keypoints[..., 2]).all()  # stickers only hide
    assert (sticker.keypoints[..., 2] < clean.keypoints[..., 2]).any()


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="split"):
        SynthBirds("val")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="variant"):
        SynthBirds("test", "sketch")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="num_classes"):
        SynthBirds("test", num_classes=99)
    with pytest.raises(InputError):
        SynthHerd("test", photos=1)


def test_homography_estimation_is_exact() -> None:
    H = torch.tensor([[1.1, 0.2, 5.0], [-0.1, 0.9, 3.0], [0.001, 0.0005, 1.0]], dtype=torch.float64)
    src = torch.rand(10, 2, dtype=torch.float64) * 100
    est = homography_from_points(src, apply_homography(H, src))
    torch.testing.assert_close(est, H)


def test_herd_homographies_map_one_photo_onto_the_other() -> None:
    herd = SynthHerd("test", individuals=5, photos=3, progress=False)
    corr_true, corr_wrong = [], []
    for ind in range(5):
        i, j = ind * 3, ind * 3 + 1
        H = herd.true_homography(i, j)
        ys, xs = torch.nonzero(herd.visible[i], as_tuple=True)
        pts = torch.stack([xs, ys], 1).double() + 0.5
        mapped = apply_homography(H, pts)
        mx, my = mapped[:, 0].floor().long(), mapped[:, 1].floor().long()
        ok = (mx >= 0) & (mx < herd.size) & (my >= 0) & (my < herd.size)
        ok[ok.clone()] &= herd.visible[j][my[ok], mx[ok]]
        a = herd.image(i).mean(0)[ys[ok], xs[ok]]
        b = herd.image(j).mean(0)[my[ok], mx[ok]]
        b_wrong = herd.image(j).mean(0)[ys[ok].clamp(max=herd.size - 1), xs[ok]]
        corr_true.append(float(torch.corrcoef(torch.stack([a, b]))[0, 1]))
        corr_wrong.append(float(torch.corrcoef(torch.stack([a, b_wrong]))[0, 1]))
    # lighting differs, but the coat pattern lines up under the true homography only
    assert min(corr_true) > 0.8 and max(corr_wrong) < 0.6
    with pytest.raises(InputError, match="different individuals"):
        herd.true_homography(0, 3)


def _img(path: Path, color=(200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), color).save(path)


def _cub_tree(root: Path) -> None:
    names = ["001.Black_footed_Albatross/a.jpg", "001.Black_footed_Albatross/b.jpg", "002.Laysan_Albatross/c.jpg"]
    for n in names:
        _img(root / "images" / n)
    (root / "images.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    (root / "bounding_boxes.txt").write_text("1 1.0 2.0 10.0 20.0\n2 0 0 5 5\n3 3 4 5 6\n")
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (root / "parts").mkdir()
    (root / "parts" / "parts.txt").write_text("1 back\n2 beak\n")
    (root / "parts" / "part_locs.txt").write_text("1 1 5.0 6.0 1\n1 2 0.0 0.0 0\n3 2 7.5 8.5 1\n")
    (root / "attributes").mkdir()
    (root / "attributes" / "image_attribute_labels.txt").write_text("1 1 1 3 1.0\n1 2 0 3 1.0\n3 2 1 4 2.0\n")


def test_cub_loader(tmp_path: Path) -> None:
    _cub_tree(tmp_path)
    train = CUB200(tmp_path, "train")
    assert train.labels.tolist() == [0, 1] and train.class_names[1] == "002.Laysan_Albatross"
    assert train.boxes[0].tolist() == [1.0, 2.0, 11.0, 22.0]
    assert train.keypoints[0].tolist() == [[5.0, 6.0, 1.0], [0.0, 0.0, 0.0]]
    assert train.keypoints[1, 1].tolist() == [7.5, 8.5, 1.0]
    assert train.attributes is not None and train.attributes.tolist() == [[1, 0], [0, 1]]
    img, label = train[1]
    assert img.shape == (3, 224, 224) and label == 1
    assert len(CUB200(tmp_path, "test")) == 1 and len(CUB200(tmp_path, "all")) == 3


def test_cub_loader_errors(tmp_path: Path) -> None:
    _cub_tree(tmp_path)
    (tmp_path / "bounding_boxes.txt").write_text("1 1.0 2.0 10.0\n")
    with pytest.raises(InputError, match=r"bounding_boxes.txt:1: expected 5 columns"):
        CUB200(tmp_path)
    (tmp_path / "bounding_boxes.txt").write_text("1 1 2 3 4\n2 1 2 3 x\n")
    with pytest.raises(InputError, match=r"bounding_boxes.txt:2"):
        CUB200(tmp_path)
    (tmp_path / "bounding_boxes.txt").unlink()
    with pytest.raises(InputError, match="missing file"):
        CUB200(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        CUB200(tmp_path / "nope")


def test_image_folder(tmp_path: Path) -> None:
    _img(tmp_path / "cats" / "1.png")
    _img(tmp_path / "dogs" / "x" / "2.jpg")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path)
    assert ds.class_names == ["cats", "dogs"] and ds.labels.tolist() == [0, 1]
    assert ds[1][0].shape == (3, 224, 224)
    (tmp_path / "dogs" / "bad.png").write_bytes(b"garbage")
    ds = ImageFolder(tmp_path)
    with pytest.raises(InputError, match="cannot read image"):
        ds[1]
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        ImageFolder(empty)
