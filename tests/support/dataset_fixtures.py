"""Writers of miniature datasets in their official on-disk layouts (tiny JPEGs, CIFAR pickles, COCO JSON)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

# Distinct colours, so a pretrained teacher (or the fake one in tests/support/fakes.py) can tell classes apart.
COLOURS = {
    "red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220), "yellow": (230, 220, 30),
    "purple": (150, 40, 190), "white": (240, 240, 240), "black": (15, 15, 15), "orange": (250, 140, 20),
}


def colour_image(rng: np.random.Generator, colour: tuple[int, int, int], height: int, width: int,
                 pattern: int = 0) -> np.ndarray:
    """A noisy image of one colour with a darker stripe pattern (period depends on `pattern`)."""
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = colour
    period = 4 + 2 * (pattern % 4)
    stripes = (np.arange(width) // period) % 2 == 0
    image[:, stripes] *= 0.6
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, pixels: np.ndarray, grey: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert("L") if grey else image).save(path, format="JPEG", quality=90)


def corrupt_jpeg(path: Path) -> None:
    """Cut a JPEG to its first 200 bytes: the header parses, decoding fails (truncated)."""
    path.write_bytes(path.read_bytes()[:200])


def write_tiny_imagenet(base: Path, num_classes: int = 4, per_class: int = 6, val_per_class: int = 3,
                        size: int = 64, seed: int = 0) -> Path:
    """base/tiny-imagenet-200 with wnids.txt, words.txt, train/<wnid>/images, val/images + annotations.

    The first train image of every class is saved greyscale (as some real ones are).
    """
    rng = np.random.default_rng(seed)
    root = base / "tiny-imagenet-200"
    names = list(COLOURS)[:num_classes]
    wnids = [f"n{1440000 + i:08d}" for i in range(num_classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = [f"{w}\t{name} thing, {name} object\n" for w, name in zip(wnids, names, strict=True)]
    (root / "words.txt").write_text("n99999999\tunused entry\n" + "".join(words))
    annotations = []
    for index, (wnid, name) in enumerate(zip(wnids, names, strict=True)):
        (root / "train" / wnid / f"{wnid}_boxes.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            pixels = colour_image(rng, COLOURS[name], size, size, pattern=index)
            write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", pixels, grey=(i == 0))
        for i in range(val_per_class):
            file_name = f"val_{index * val_per_class + i}.JPEG"
            write_jpeg(root / "val" / "images" / file_name, colour_image(rng, COLOURS[name], size, size, index))
            annotations.append(f"{file_name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}\n")
    (root / "val" / "val_annotations.txt").write_text("".join(annotations))
    return root


def cifar_batch(rng: np.random.Generator, count: int, bytes_keys: bool) -> dict:
    """One batch dict exactly as in cifar-100-python: data (N, 3072) uint8 in R, G, B planes, label lists."""
    fine = [int(i % 100) for i in range(count)]
    batch = {
        "filenames": [f"img_{i}.png".encode() for i in range(count)],
        "batch_label": b"training batch 1 of 1",
        "fine_labels": fine,
        "coarse_labels": [label // 5 for label in fine],
        "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
    }
    return {k.encode(): v for k, v in batch.items()} if bytes_keys else batch


def write_cifar100(base: Path, n_train: int = 120, n_test: int = 40, bytes_keys: bool = False) -> Path:
    """base/cifar-100-python/{train, test, meta} pickled (protocol 2) like the official files."""
    rng = np.random.default_rng(0)
    root = base / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    if bytes_keys:
        meta = {k.encode(): v for k, v in meta.items()}
    for name, value in (("train", cifar_batch(rng, n_train, bytes_keys)),
                        ("test", cifar_batch(rng, n_test, bytes_keys)), ("meta", meta)):
        (root / name).write_bytes(pickle.dumps(value, protocol=2))
    return root


def coco_captions(colour: str, image_id: int, count: int) -> list[str]:
    templates = ["a {c} picture", "something {c} with stripes", "the colour {c} fills it",
                 "a photo that is mostly {c}", "{c} stripes on {c}", "an extra {c} caption"]
    return [templates[i % len(templates)].format(c=colour) + f" number {image_id}" for i in range(count)]


def write_coco(base: Path, n_train: int = 24, n_val: int = 12, karpathy_test: list[int] | None = None,
               seed: int = 0) -> tuple[Path, dict[int, str]]:
    """base/coco with annotations/captions_{train,val}2017.json and train2017/, val2017/ JPEGs.

    Every image has 5 captions except image 1, which has 6; images are 40x32 (not square).
    Returns the root and image id -> colour name.
    """
    rng = np.random.default_rng(seed)
    root = base / "coco"
    colours = list(COLOURS)[:6]
    colour_of: dict[int, str] = {}
    next_id = 1
    for split, count in (("train", n_train), ("val", n_val)):
        images, annotations = [], []
        for _ in range(count):
            image_id, colour = next_id, colours[next_id % len(colours)]
            next_id += 1
            colour_of[image_id] = colour
            file_name = f"{image_id:012d}.jpg"
            write_jpeg(root / f"{split}2017" / file_name, colour_image(rng, COLOURS[colour], 32, 40, image_id))
            images.append({"id": image_id, "file_name": file_name, "height": 32, "width": 40})
            for caption in coco_captions(colour, image_id, 6 if image_id == 1 else 5):
                annotations.append({"id": 1000 + len(annotations) + 100 * image_id, "image_id": image_id,
                                    "caption": caption})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        payload = {"info": {}, "licenses": [], "images": images, "annotations": annotations[::-1]}
        (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(payload))
    if karpathy_test is not None:
        entries = [{"cocoid": i, "split": "test" if i in karpathy_test else ("restval" if i % 2 else "train"),
                    "filepath": "val2014", "filename": f"COCO_val2014_{i:012d}.jpg", "sentences": []}
                   for i in colour_of]
        (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root, colour_of


def write_imagefolder(base: Path, classes: tuple[str, ...] = ("cat", "dog", "fish"), per_class: int = 5) -> Path:
    """base/<class>/*.jpg, 48x36 images (plus a stray file that is not a class)."""
    rng = np.random.default_rng(1)
    for index, name in enumerate(classes):
        for i in range(per_class):
            pixels = colour_image(rng, list(COLOURS.values())[index], 36, 48, index)
            write_jpeg(base / name / f"{i:03d}.jpg", pixels)
    (base / "notes.txt").write_text("not a class")
    return base
