"""A folder of class sub-folders becomes a dataset: class-disjoint splits, cached, and every
way it can be wrong is named for the person who has to fix it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from taml.data.folder import MANIFEST, import_folder, split_counts
from taml.data.loading import load_dataset_split
from taml.data.registry import ALL_SPLITS, DatasetError
from taml.data.store import load_split, split_path


def write_image(path, rng, mode="RGB", size=(40, 30)):
    pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(path)


def make_folder(root, n_classes=10, per_class=3, seed=0):
    """``root/class_XX/`` with PNG and JPEG images of odd sizes, cases and modes, plus
    files a scan must skip."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            name, mode = [("img{}.png", "RGB"), ("img{}.JPG", "RGB"), ("img{}.jpeg", "L"),
                          ("img{}.PNG", "RGBA")][i % 4]
            write_image(folder / name.format(i), rng, mode)
        (folder / "notes.txt").write_text("not an image")
        (folder / ".hidden.png").write_bytes(b"not even a png")
    (root / ".cache").mkdir()  # hidden folders are not classes
    return root


def _load(directory, split):
    return load_split(directory, split, fix_hint="test")


def _age(paths):
    for path in paths:
        os.utime(path, ns=(10**18, 10**18))


def test_classes_are_split_disjointly_in_proportion(tmp_path):
    source = make_folder(tmp_path / "images")
    out = import_folder(source, tmp_path / "out", image_size=16, progress=False)
    splits = {s: _load(out, s) for s in ALL_SPLITS}
    names = [set(data.class_names) for data in splits.values()]
    assert [len(n) for n in names] == [6, 2, 2]  # 10 classes at 64:16:20
    assert set.union(*names) == {f"class_{c:02d}" for c in range(10)}
    assert sum(len(n) for n in names) == 10
    for data in splits.values():
        assert data.images.shape[1:] == (16, 16, 3) and data.images.dtype == np.uint8
        assert list(data.class_sizes) == [3] * data.n_classes  # notes.txt, .hidden.png skipped


def test_split_is_deterministic_from_the_seed(tmp_path):
    source = make_folder(tmp_path / "images", n_classes=12, per_class=2)
    a = import_folder(source, tmp_path / "a", progress=False)
    b = import_folder(source, tmp_path / "b", progress=False)
    c = import_folder(source, tmp_path / "c", seed=1, progress=False)
    for split in ALL_SPLITS:
        assert _load(a, split).class_names == _load(b, split).class_names
        assert np.array_equal(_load(a, split).images, _load(b, split).images)
    assert _load(a, "train").class_names != _load(c, "train").class_names


def test_greyscale_and_transparent_images_become_rgb(tmp_path):
    source = tmp_path / "images"
    for c in range(3):
        (source / f"c{c}").mkdir(parents=True)
        Image.new("L", (20, 20), 100).save(source / f"c{c}" / "grey.png")
        Image.new("RGBA", (50, 10), (0, 0, 0, 0)).save(source / f"c{c}" / "clear.png")
        Image.new("I;16", (8, 8), 128 * 257).save(source / f"c{c}" / "deep.png")
    data = _load(import_folder(source, tmp_path / "out", image_size=8, progress=False), "test")
    clear, deep, grey = data.images[:3]  # files of a class are read in name order
    assert np.all(grey == 100)  # the grey value in all three channels
    assert np.all(clear == 255)  # transparency is composited over white
    assert np.all(deep == 128)  # 16-bit greys are scaled to 8 bits, not clipped to white


def test_second_import_is_cached_and_a_new_file_rebuilds(tmp_path):
    source = make_folder(tmp_path / "images")
    out = import_folder(source, tmp_path / "out", progress=False)
    files = [split_path(out, s) for s in ALL_SPLITS]
    _age(files)
    import_folder(source, tmp_path / "out", progress=False)
    assert all(f.stat().st_mtime_ns == 10**18 for f in files)

    write_image(source / "class_00" / "extra.png", np.random.default_rng(1))
    import_folder(source, tmp_path / "out", progress=False)
    assert all(f.stat().st_mtime_ns != 10**18 for f in files)
    sizes = {n: s for split in ALL_SPLITS for n, s in
             zip(_load(out, split).class_names, _load(out, split).class_sizes, strict=True)}
    assert sizes["class_00"] == 4


def test_a_cache_without_its_manifest_is_rebuilt(tmp_path):
    source = make_folder(tmp_path / "images")
    out = import_folder(source, tmp_path / "out", progress=False)
    (out / MANIFEST).unlink()  # as if the import had been killed before finishing
    _age([split_path(out, "train")])
    import_folder(source, tmp_path / "out", progress=False)
    assert split_path(out, "train").stat().st_mtime_ns != 10**18
    assert (out / MANIFEST).is_file()


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere does not exist.*sub-folder"):
        import_folder(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        import_folder(tmp_path / "file.png", tmp_path / "out")


def test_images_without_class_folders_are_explained(tmp_path):
    source = tmp_path / "flat"
    source.mkdir()
    write_image(source / "a.png", np.random.default_rng(0))
    with pytest.raises(DatasetError, match=r"no class sub-folders \(it has 1 images"):
        import_folder(source, tmp_path / "out")


def test_corrupt_image_names_the_file(tmp_path):
    source = make_folder(tmp_path / "images")
    broken = source / "class_03" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DatasetError, match="Remove or fix this file") as error:
        import_folder(source, tmp_path / "out", progress=False)
    assert str(broken) in str(error.value)
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_truncated_image_names_the_file(tmp_path):
    source = make_folder(tmp_path / "images")
    path = source / "class_01" / "img0.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="img0.png"):
        import_folder(source, tmp_path / "out", progress=False)


def test_small_class_is_named_with_its_count(tmp_path):
    source = make_folder(tmp_path / "images")
    for extra in sorted((source / "class_05").glob("img*"))[1:]:
        extra.unlink()
    with pytest.raises(DatasetError, match=r"class 'class_05' has 1;.*at least 2"):
        import_folder(source, tmp_path / "out")


def test_too_few_classes_says_how_many_are_needed(tmp_path):
    source = make_folder(tmp_path / "images", n_classes=2)
    with pytest.raises(DatasetError, match="at least 3 classes.*found 2"):
        import_folder(source, tmp_path / "out")


def test_split_counts_follow_the_ratio_and_give_every_split_a_class():
    assert split_counts(100, (64, 16, 20)) == (64, 16, 20)
    assert split_counts(3, (64, 16, 20)) == (1, 1, 1)
    for n in range(3, 60):
        counts = split_counts(n, (64, 16, 20))
        assert sum(counts) == n and min(counts) >= 1


def test_load_dataset_split_imports_a_folder(tmp_path):
    source = make_folder(tmp_path / "images", per_class=2)
    data = load_dataset_split("folder:" + str(source), "train", data_root=tmp_path / "root")
    assert data.n_classes == 6 and data.images.shape[1:] == (32, 32, 3)
    caches = list((tmp_path / "root" / "folders").iterdir())
    assert len(caches) == 1 and (caches[0] / MANIFEST).is_file()
