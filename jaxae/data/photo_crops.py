"""Build a real colour image-folder data set offline, from photographs that PyPI wheels ship.

Classes are source photographs: ten colour photographs from the scikit-image wheel
(skimage/data) and the scikit-learn wheel (sklearn/datasets/images). Each class holds random
square crops of its photograph, at a few scales (crop side = size * scale, downscaled to
size x size by area averaging), written as PNG:

    <out>/<photo>/<i>.png                       (holdout = 0: one folder per photograph)
    <out>/train/<photo>/<i>.png, <out>/test/... (holdout > 0: test crops come from a band of
                                                 each photograph that no train crop touches)

plus <out>/crops.json: the parameters, each source file's sha256 and the box of every crop.
Deterministic from the seed (NumPy's PCG64 streams, seeded by [seed, photo index]).

Only Pillow and NumPy are imported; the photographs are found through the installed packages'
folders (`pip install 'jaxae[photos]'`: scikit-image and scikit-learn), or through
`--photo-dir`.

    python -m jaxae.data.photo_crops data/photo_crops      # 6,000 crops: 4,800 train / 1,200 test
    python train.py --config=configs/conv_ae_folder.py --workdir=runs/crops \
        --config.data.path=data/photo_crops

By default a fifth of each photograph (a band along its longer side) is held out: test crops
come from it and no train crop touches it, so test pixels never leak into training.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image

from jaxae.cli.arguments import OneLineErrors

# (class name, package, path inside the package). All colour photographs; those left out are below.
PHOTOS = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg"),
    ("ihc", "skimage", "data/ihc.png"),
    ("motorcycle", "skimage", "data/motorcycle_left.png"),
    ("retina", "skimage", "data/retina.jpg"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
)
# Images in skimage/data (0.26) left out, and why: motorcycle_right.png (the right half of
# the motorcycle stereo pair: a near-duplicate class); color.png, logo.png (synthetic: a
# colour wheel, a logo with transparency); chessboard_RGB.png, phantom.png (synthetic and
# grey-valued); horse.png (a binary silhouette); brick, camera, cell, clock_motion, coins,
# grass, gravel, moon, page, text, chessboard_GRAY and microaneurysms (grey, mode L: a grey
# class would be told apart by colour alone; microaneurysms is also tiny, 102x102).
MANIFEST = "crops.json"
MAX_TRIES = 20  # draws of a crop position before a flat crop is accepted anyway


def find_photo(package: str, relpath: str, extra_dirs: Sequence[str] = ()) -> str:
    """Return the path of a photograph shipped in `package`, or found by name in `extra_dirs`."""
    for folder in extra_dirs:
        path = os.path.join(folder, os.path.basename(relpath))
        if os.path.isfile(path):
            return path
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], relpath)
        if os.path.isfile(path):
            return path
    pip_name = {"skimage": "scikit-image", "sklearn": "scikit-learn"}.get(package, package)
    raise FileNotFoundError(
        f"photograph {package}/{relpath} not found: `pip install 'jaxae[photos]'` (or "
        f"{pip_name}) in this Python "
        f"({sys.executable}), or pass --photo-dir pointing at a folder holding "
        f"{os.path.basename(relpath)}"
    )


def _package_version(package: str) -> str | None:
    pip_name = {"skimage": "scikit-image", "sklearn": "scikit-learn"}.get(package, package)
    try:
        return importlib.metadata.version(pip_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load_rgb(path: str, min_side: int) -> np.ndarray:
    """Decode a photograph to uint8 RGB [H, W, 3]; refuse grey-valued or too-small ones."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        raise ValueError(f"{path} is grey-valued: only colour photographs are used")
    if min(rgb.shape[:2]) < min_side:
        raise ValueError(f"{path} is {rgb.shape[0]}x{rgb.shape[1]}, smaller than a "
                         f"{min_side}-pixel crop")
    return rgb


def _regions(shape: tuple[int, ...], holdout: float) -> dict[str, tuple[int, int, int, int]]:
    """Return {split: (top, left, bottom, right)}: with holdout, the last `holdout` fraction of
    the longer axis is the test band and the rest is train."""
    h, w = shape[:2]
    if holdout <= 0:
        return {"all": (0, 0, h, w)}
    if w >= h:
        cut = round(w * (1 - holdout))
        return {"train": (0, 0, h, cut), "test": (0, cut, h, w)}
    cut = round(h * (1 - holdout))
    return {"train": (0, 0, cut, w), "test": (cut, 0, h, w)}


def _crops(
    rgb: np.ndarray, region: tuple[int, int, int, int], count: int, size: int,
    scales: Sequence[int], min_std: float, rng: np.random.Generator,
) -> list[tuple[np.ndarray, list[int]]]:
    """Return `count` (size x size crop, [top, left, side]) drawn inside `region`, scales taken
    in turn; a crop whose pixel std is below `min_std` is redrawn (up to MAX_TRIES times)."""
    top, left, bottom, right = region
    usable = [s for s in scales if size * s <= min(bottom - top, right - left)]
    if not usable:
        raise ValueError(f"region {region} is smaller than a {size}-pixel crop")
    out = []
    for i in range(count):
        side = size * usable[i % len(usable)]
        for _ in range(MAX_TRIES):
            y = int(rng.integers(top, bottom - side + 1))
            x = int(rng.integers(left, right - side + 1))
            crop = rgb[y:y + side, x:x + side]
            if crop.std() >= min_std:
                break
        if side != size:  # integer factor: area averaging
            crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BOX))
        out.append((np.ascontiguousarray(crop), [y, x, side]))
    return out


def build_photo_crops(
    out_dir: str,
    *,
    per_photo: int = 600,
    size: int = 32,
    scales: Sequence[int] = (1, 2, 4),
    seed: int = 0,
    holdout: float = 0.2,
    min_std: float = 4.0,
    photos: Sequence[tuple[str, str, str]] = PHOTOS,
    photo_dirs: Sequence[str] = (),
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Write the crops data set to `out_dir`; return {class: {split: count}}.

    per_photo: crops per photograph (with holdout, round(per_photo * holdout) of them test).
    overwrite: replace an `out_dir` made by this function earlier (it holds crops.json), once
    the new one is written whole (it is built in `<out_dir>.partial`): a failure leaves it.
    """
    _check_options(per_photo, size, scales, holdout, min_std)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} is a file: give a folder to write the crops into")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not (overwrite and os.path.isfile(os.path.join(out_dir, MANIFEST))):
            raise FileExistsError(
                f"{out_dir} is not empty: choose a new folder (or pass overwrite=True / "
                f"--overwrite for a folder this script made, with its {MANIFEST})"
            )
    found = [find_photo(package, relpath, photo_dirs) for _, package, relpath in photos]
    final, out_dir = out_dir, os.path.normpath(out_dir) + ".partial"
    shutil.rmtree(out_dir, ignore_errors=True)  # an earlier attempt's
    n_test = round(per_photo * holdout) if holdout > 0 else 0
    counts: dict[str, dict[str, int]] = {}
    manifest = {
        "params": {"per_photo": per_photo, "size": size, "scales": list(scales), "seed": seed,
                   "holdout": holdout, "min_std": min_std, "max_tries": MAX_TRIES,
                   "resample": "BOX (area average)", "rng": "numpy PCG64, seed [seed, index]",
                   "numpy": np.__version__, "pillow": Image.__version__},
        "photos": {}, "crops": {},
    }
    for index, ((name, package, relpath), path) in enumerate(zip(photos, found, strict=True)):
        rgb = _load_rgb(path, size * min(scales))
        rng = np.random.default_rng([seed, index])
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        manifest["photos"][name] = {
            "package": package, "package_version": _package_version(package),
            "file": relpath, "sha256": sha, "height": rgb.shape[0], "width": rgb.shape[1],
        }
        counts[name] = {}
        for split, region in _regions(rgb.shape, holdout).items():
            count = n_test if split == "test" else per_photo - n_test
            folder = os.path.join(out_dir, name) if split == "all" else os.path.join(
                out_dir, split, name)
            os.makedirs(folder, exist_ok=True)
            width = len(str(max(count - 1, 0)))
            for i, (crop, box) in enumerate(
                    _crops(rgb, region, count, size, scales, min_std, rng)):
                rel = os.path.relpath(os.path.join(folder, f"{i:0{width}d}.png"), out_dir)
                Image.fromarray(crop).save(os.path.join(out_dir, rel), format="PNG")
                manifest["crops"][rel.replace(os.sep, "/")] = box
            counts[name][split] = count
    manifest["counts"] = counts
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    shutil.rmtree(final, ignore_errors=True)  # the earlier set, now that this one is whole
    os.replace(out_dir, final)
    return counts


def _check_options(per_photo: int, size: int, scales: Sequence[int], holdout: float,
                   min_std: float) -> None:
    """A ValueError naming the first option that cannot make a data set."""
    for name, value in (("per_photo", per_photo), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a whole number >= 1 (--"
                             f"{name.replace('_', '-')})")
    if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales) \
            or len(set(scales)) != len(scales):
        raise ValueError(f"scales={list(scales)!r} must be different whole numbers >= 1, e.g. "
                         "--scales 1 2 4")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout={holdout!r} must be in [0, 1): the share of each photograph "
                         "kept for test crops (0: no split)")
    if not min_std >= 0:
        raise ValueError(f"min_std={min_std!r} must be >= 0 (--min-std)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = OneLineErrors(prog="python -m jaxae.data.photo_crops",
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="the folder to write: train/<photo>/ and "
                        "test/<photo>/, a class per photograph (with --holdout 0, <photo>/)")
    parser.add_argument("--per-photo", type=int, default=600,
                        help="crops per photograph (default 600)")
    parser.add_argument("--size", type=int, default=32,
                        help="side of each square crop, in pixels (default 32)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4],
                        help="crops of size x scale pixels, area-averaged down to size, "
                        "taken in turn (default 1 2 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops' positions")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="fraction of each photograph kept for test crops (0: no split, "
                        "one folder per photograph)")
    parser.add_argument("--min-std", type=float, default=4.0,
                        help="a crop whose pixels' standard deviation is below this (a flat "
                        "patch of sky) is drawn again (default 4.0)")
    parser.add_argument("--photo-dir", action="append", default=[],
                        help="a folder holding the photographs, where their packages are not "
                        "installed (repeatable)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an out_dir this command wrote before")
    args = parser.parse_args(argv)
    try:
        counts = build_photo_crops(
            args.out_dir, per_photo=args.per_photo, size=args.size, scales=args.scales,
            seed=args.seed, holdout=args.holdout, min_std=args.min_std,
            photo_dirs=args.photo_dir, overwrite=args.overwrite,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    total = sum(sum(c.values()) for c in counts.values())
    for name, by_split in counts.items():
        print(f"{name:20s} " + " ".join(f"{s}={n}" for s, n in by_split.items()))
    print(f"{len(counts)} classes, {total} images in {args.out_dir}")


if __name__ == "__main__":
    main()
