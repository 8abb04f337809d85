"""Tiny copies of the nine upstream downloads, in each source's own layout and format.

Each builder returns bytes as the real server would send them (a zip, a tar.gz, a MATLAB
file, a pickle, an idx.gz, a .npy) holding a handful of small random images per class.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import scipy.io
from PIL import Image


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def image_bytes(rng, size: tuple[int, int], fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A random image file (width, height) = ``size``."""
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def mat_bytes(variables: dict) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


def zenodo_listing(files: dict[str, bytes]) -> bytes:
    """The part of Zenodo's ``/api/records/<id>`` answer that we read."""
    entries = [{"key": name, "size": len(data), "checksum": f"md5:{md5(data)}"}
               for name, data in files.items()]
    return json.dumps({"id": 1, "files": entries}).encode()


def cifarfs_zip(splits: dict[str, list[str]], per_class: int, seed: int = 0) -> bytes:
    """learn2learn's ``cifar100.zip``: ``cifar100/data/<class>/*.png`` and the Bertinetto
    split files ``cifar100/splits/bertinetto/{train,val,test}.txt``."""
    rng = np.random.default_rng(seed)
    members = {}
    for split_file, classes in zip(("train", "val", "test"), splits.values(), strict=True):
        members[f"cifar100/splits/bertinetto/{split_file}.txt"] = (
            "\n".join(classes) + "\n").encode()
        for name in classes:
            for i in range(per_class):
                members[f"cifar100/data/{name}/{name}_s_{i:06d}.png"] = image_bytes(
                    rng, (32, 32), "PNG")
    return zip_bytes(members)


def svhn_mat(per_class: int, seed: int) -> bytes:
    """An SVHN ``*_32x32.mat``: ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1] in 1..10 (10 = 0)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(1, 11), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    return mat_bytes({"X": images, "y": labels[:, None].astype(np.uint8)})


def mini_imagenet_pickle(classes: list[str], per_class: int, seed: int) -> bytes:
    """A ``mini-imagenet-cache-*.pkl``: ``image_data`` uint8 [N, 84, 84, 3] and
    ``class_dict`` {class: [indices]}, images of a class not contiguous."""
    rng = np.random.default_rng(seed)
    n = len(classes) * per_class
    order = rng.permutation(n)
    class_dict = {name: sorted(order[c * per_class:(c + 1) * per_class].tolist())
                  for c, name in enumerate(classes)}
    images = rng.integers(0, 256, (n, 84, 84, 3), dtype=np.uint8)
    return pickle.dumps({"image_data": images, "class_dict": class_dict}, protocol=4)


def cub_tgz(classes: list[str], per_class: int, grey_in: str, seed: int = 0) -> bytes:
    """``CUB_200_2011.tgz``: ``CUB_200_2011/images/<class>/*.jpg`` (plus the top-level
    ``attributes.txt`` the real archive has), one greyscale photo in class ``grey_in``."""
    rng = np.random.default_rng(seed)
    members = {"attributes.txt": b"1 has_bill_shape::curved\n"}
    for name in classes:
        for i in range(per_class):
            members[f"CUB_200_2011/images/{name}/{name[4:]}_{i:04d}_{i}.jpg"] = image_bytes(
                rng, (50, 40))
    members[f"CUB_200_2011/images/{grey_in}/{grey_in[4:]}_grey_0.jpg"] = image_bytes(
        rng, (50, 40), mode="L")
    return tgz_bytes(members)


def aircraft_tgz(variants: list[str], per_class: int, box_colour=(255, 0, 0)) -> bytes:
    """``fgvc-aircraft-2013b.tar.gz``: ``data/images/<id>.jpg``, ``data/images_box.txt``
    (id xmin ymin xmax ymax) and ``data/images_variant_{train,val,test}.txt`` (id variant).
    Each image is blue outside its bounding box and ``box_colour`` inside."""
    members, boxes, families = {}, [], {"train": [], "val": [], "test": []}
    image_id = 1000000
    pixels = np.zeros((50, 60, 3), dtype=np.uint8)
    pixels[...] = (0, 0, 255)
    pixels[4:36, 5:44] = box_colour
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    for v, variant in enumerate(variants):
        for i in range(per_class):
            image_id += 1
            members[f"fgvc-aircraft-2013b/data/images/{image_id}.jpg"] = buffer.getvalue()
            boxes.append(f"{image_id} 5 4 44 36")
            families[("train", "val", "test")[(v + i) % 3]].append(f"{image_id} {variant}")
    members["fgvc-aircraft-2013b/data/images_box.txt"] = ("\n".join(boxes) + "\n").encode()
    for family, lines in families.items():
        members[f"fgvc-aircraft-2013b/data/images_variant_{family}.txt"] = (
            "\n".join(lines) + "\n").encode()
    return tgz_bytes(members)


def quickdraw_npy(rows: int, seed: int) -> bytes:
    """A ``numpy_bitmap/<class>.npy``: uint8 [rows, 784]."""
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).integers(0, 256, (rows, 784), np.uint8))
    return buffer.getvalue()


def flowers_files(per_class: int, seed: int = 0) -> tuple[bytes, bytes]:
    """``102flowers.tgz`` (``jpg/image_00001.jpg`` ...) and ``imagelabels.mat``
    (``labels`` [1, N], classes 1..102)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(1, 103), per_class)
    rng.shuffle(labels)
    members = {f"jpg/image_{i + 1:05d}.jpg": image_bytes(rng, (40, 30))
               for i in range(len(labels))}
    return tgz_bytes(members), mat_bytes({"labels": labels[None, :].astype(np.uint8)})


def gtsrb_zip(n_classes: int, per_class: int, seed: int = 0) -> bytes:
    """``GTSRB-Training_fixed.zip``: ``GTSRB/Training/<00000..>/*.ppm`` and a CSV each."""
    rng = np.random.default_rng(seed)
    members = {}
    for c in range(n_classes):
        folder = f"GTSRB/Training/{c:05d}"
        members[f"{folder}/GT-{c:05d}.csv"] = b"Filename;Width;Height\n"
        for i in range(per_class):
            members[f"{folder}/00000_{i:05d}.ppm"] = image_bytes(rng, (30, 29), "PPM")
    return zip_bytes(members)


def idx_gz(images: np.ndarray | None = None, labels: np.ndarray | None = None) -> bytes:
    """An MNIST-format ``*-idx3-ubyte.gz`` (images) or ``*-idx1-ubyte.gz`` (labels)."""
    if images is not None:
        raw = struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes()
    else:
        raw = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    return gzip.compress(raw)
