"""TFDS builder `jaxae_folder`: a local ImageFolder as raw uint8 array_record files.

`--config.data.name=folder --config.data.path=FOLDER`. The images are the files whose
extension torchvision's ImageFolder reads (IMAGE_EXTENSIONS); other files are ignored, and
counted in the source's description. Layouts (class sub-folders give the labels; class names
are the folder names, sorted):
  root/<class>/**/*.png|jpg|...                        a test split is carved: fixed, seeded
  root/*.png|jpg|...                                   one class, ONE_CLASS; carved alike
  root/train/<class>/... and root/test/<class>/...     the given split
  root/train/<class>/... alone                         a test split is carved from train/
A carved test split takes `test_fraction` (TEST_FRACTION unless given) of each class.
Options: `image_size` S: resize so the image covers SxS then centre-crop; `channels` 1 or 3:
grey <-> RGB (`jaxae.data.images`). Without them, all images must share one size, and the
images are grey when every file is.

The set is prepared once into a TFDS data dir
(`jaxae_folder/<folder name>_<hash of its path>_<hash of its fingerprint>_<H>x<W>x<C>`); the
fingerprint covers the source (sorted relative paths, sizes, sha256 of contents) and the
options, so a folder whose files were added, removed or edited is prepared anew beside the
set of its earlier files (which runs trained on those files still match). The source folder
is hashed on every load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import tensorflow_datasets as tfds
from PIL import Image, UnidentifiedImageError

from jaxae.data.dataset import ONE_CLASS, Dataset, from_prepared, reads_paths, unset_means
from jaxae.data.errors import CorruptImage, DataError, MixedImageSizes
from jaxae.data.images import (
    GREY_MODES,
    has_transparency,
    load_image,
    too_large,
    turned_by_exif,
)
from jaxae.data.records import (
    JaxaeBuilder,
    PreparedSplit,
    files_entries,
    is_prepared,
    logged_progress,
    prepare,
    raw_image_info,
    read_source_record,
    sha256_json,
    write_source_record,
)

SPLITS = ("train", "test")
ANNOUNCED_FILES = 20_000  # a folder of this many images says it is being checked
CHECK_EVERY_S = 10.0  # then how far the check has got, every this many seconds
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
FORMATS = "PNG, JPEG, BMP, PPM, PGM, TIFF or WebP"
FORMAT_VERSION = 1  # bump when decoding / resizing changes, so prepared sets are re-made
BUILDER_NAME = "jaxae_folder"
VERSION = "1.0.0"
TEST_FRACTION = 0.2  # share of each class carved as the test split, when there is no test/


@dataclasses.dataclass(frozen=True)
class FolderPlan:
    """What will be read: the split files with labels, the output shape, and the fingerprint."""

    root: str
    layout: str  # "classes" (test carved), "train/test", or "train" (test carved)
    class_names: tuple[str, ...]
    files: dict[str, tuple[tuple[str, int], ...]]  # {split: ((relative path, label), ...)}
    image_shape: tuple[int, int, int]  # (H, W, C)
    resize: bool  # False: every image already has the native shape
    test_fraction: float
    seed: int
    files_sha256: str
    fingerprint: str
    ignored: tuple[str, ...]  # relative paths of files not of IMAGE_EXTENSIONS
    # images converted as they are read, where their headers were read (image_size or
    # channels unset): grey ones made RGB (or colour ones grey), transparent ones on black
    converted: int = 0
    transparent: int = 0
    upscaled: int = 0  # images smaller than image_size on a side: enlarged to cover it
    turned: int = 0  # images whose EXIF orientation a viewer applies, read as stored

    def describe(self) -> str:
        """Return a one-line human description of the source and the options."""
        h, w, c = self.image_shape
        counts = " / ".join(f"{len(self.files[s])} {s}" for s in SPLITS)
        how = (f"test carved from {'train/' if self.layout == 'train' else 'each class'} "
               f"(fraction {self.test_fraction}, data.seed {self.seed}: the same for every "
               "run's seed)"
               if self.layout != "train/test" else "train/ and test/ as given")
        resized = "resized and centre-cropped to" if self.resize else "native"
        files = f"{len(self.ignored)} file{'s' if len(self.ignored) != 1 else ''}"
        ignored = (f"; {files} not {FORMATS} images (other formats, or no regular files) "
                   f"ignored, e.g. {self.ignored[0]}" if self.ignored else "")
        classes = f"{len(self.class_names)} class{'es' if len(self.class_names) != 1 else ''}"
        made = "RGB" if c == 3 else "grey"
        converted = (f"; {self.converted} {'grey' if c == 3 else 'colour'} image"
                     f"{'s' * (self.converted != 1)} made {made}" if self.converted else "")
        transparent = (f"; {self.transparent} with an alpha channel, composited on black "
                       "where transparent" if self.transparent else "")
        upscaled = (f"; {self.upscaled} smaller than {h}x{w} enlarged (blurred)"
                    if self.upscaled else "")
        turned = (f"; {self.turned} turned by EXIF in a viewer, {TURNED_FIX}"
                  if self.turned else "")
        return (f"image folder {self.root} ({classes}, {counts}, {how}; "
                f"{resized} {h}x{w}x{c}{converted}{transparent}{upscaled}{turned}{ignored})")


def _list_images(folder: str, root: str) -> tuple[list[str], list[str]]:
    """Return (image paths, other file paths) under `folder`, relative to `root`, sorted;
    hidden files and folders (starting with '.') are skipped. Linked folders are followed,
    as torchvision's ImageFolder follows them, each real folder read once (a link back up
    the tree would loop). An image's name on what is no regular file (a FIFO, a device, a
    link to nothing) counts among the other files: opening a FIFO waited for ever."""
    images, other = [], []
    seen = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(d)
        dirnames[:] = kept
        for name in filenames:
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            is_image = name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(path)
            (images if is_image else other).append(rel)
    return sorted(images), sorted(other)


def _subdirs(folder: str) -> list[str]:
    """Return the sorted names of the non-hidden sub-folders of `folder`."""
    return sorted(
        d for d in os.listdir(folder)
        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _class_files(
    root: str, base: str, ignored: list[str]
) -> dict[str, list[str]]:
    """Return {class name: image paths relative to root} of the class folders in root/base;
    a folder of images alone (no sub-folders) is one class, ONE_CLASS."""
    folder = os.path.join(root, base) if base else root
    loose, other = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.startswith(".") and os.path.isfile(path):
            (loose if name.lower().endswith(IMAGE_EXTENSIONS) else other).append(name)
    ignored += [os.path.join(base, n) if base else n for n in other]
    if loose and not _subdirs(folder):  # unlabelled images: an autoencoder needs no classes
        return {ONE_CLASS: [os.path.join(base, n) if base else n for n in loose]}
    if loose:
        raise DataError(
            f"image folder {folder} holds images beside sub-folders (e.g. {loose[0]} beside "
            f"{_subdirs(folder)[0]}/): put every image in a <class>/ folder, or keep only "
            "images (one class)"
        )
    classes = {}
    for name in _subdirs(folder):
        images, other = _list_images(os.path.join(folder, name), root)
        ignored += other
        if not images:
            raise DataError(
                f"class folder {os.path.join(folder, name)} holds no {FORMATS} images: add "
                "some or remove the folder"
            )
        classes[name] = images
    if not classes:
        raise DataError(
            f"image folder {folder} holds no images: lay it out as {folder}/<class>/*.png, "
            f"{folder}/*.png (one class), or train/<class>/ and test/<class>/"
        )
    return classes


def _carve(
    classes: dict[str, list[str]], class_names: tuple[str, ...], fraction: float, seed: int
) -> dict[str, list[tuple[str, int]]]:
    """Split every class into train and test: a file goes to test when its rank by
    sha256(seed/path) is among the first round(n * fraction) (at least 1 when n >= 2)."""
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, name in enumerate(class_names):
        files = classes.get(name, [])
        ranked = sorted(files, key=lambda rel: hashlib.sha256(
            f"{seed}/{rel.replace(os.sep, '/')}".encode()).hexdigest())
        n_test = round(len(files) * fraction)
        if fraction > 0 and len(files) >= 2:
            n_test = min(max(n_test, 1), len(files) - 1)
        test = set(ranked[:n_test])
        for rel in files:
            splits["test" if rel in test else "train"].append((rel, label))
    return splits


def _empty_test_fix(layout: str, test_fraction: float) -> str:
    """What to do about an empty carved test split (it takes a share of each class of two
    images or more), for the folder's layout: class folders at the top, or train/ alone."""
    given = ("add a test/ folder beside train/" if layout == "train"
             else "lay the folder out as train/<class>/ and test/<class>/")
    if test_fraction == 0:
        return f"give a test_fraction above 0 (--config.data.test_fraction), or {given}"
    return f"no class has two images to share between the splits: add images, or {given}"


TURNED_FIX = ("read as stored (sideways or mirrored: turn the files themselves, e.g. "
              "PIL.ImageOps.exif_transpose, to train on them upright)")


class _Headers(NamedTuple):
    """What the images' headers and the options make of a folder."""

    shape: tuple[int, int, int]  # (H, W, C) of every image as read
    resize: bool
    converted: int  # images converted to C channels
    transparent: int
    upscaled: int  # images smaller than image_size on a side
    turned: int  # images whose EXIF orientation a viewer applies


def _infer_shape(
    root: str, rels: list[str], image_size: int | None, channels: int | None
) -> _Headers:
    """The shape and conversions from the options and every image's header: what the options
    leave unset is read from them, and every image whose header cannot be read is named at
    once, before anything is prepared."""
    greys, transparent, upscaled, turned, unreadable = 0, 0, 0, 0, []
    sizes: dict[tuple[int, int], list[str]] = {}  # (height, width) -> its images
    for rel in logged_progress(rels, "image headers", CHECK_EVERY_S, verb="read",
                               on_terminal=True):
        path = os.path.join(root, rel)
        try:
            with Image.open(path) as im:
                sizes.setdefault((im.height, im.width), []).append(rel)
                greys += im.mode in GREY_MODES
                transparent += has_transparency(im)
                upscaled += image_size is not None and min(im.height, im.width) < image_size
                turned += turned_by_exif(im)
        except Image.DecompressionBombError as e:
            raise DataError(too_large(path, e)) from None
        except (OSError, UnidentifiedImageError) as e:
            unreadable.append((path, e))
    if len(unreadable) == 1:
        path, e = unreadable[0]
        raise DataError(f"image {path} cannot be read ({e}): replace or remove it")
    if unreadable:
        shown = "; ".join(f"{os.path.relpath(p, root)} ({e})" for p, e in unreadable[:3])
        raise DataError(f"{len(unreadable)} images in {root} cannot be read: {shown}"
                        f"{'; ...' if len(unreadable) > 3 else ''}: replace or remove them")
    if image_size is None and len(sizes) > 1:
        raise MixedImageSizes(f"images in {root} differ in size ({_sizes_named(sizes, turned)})")
    h, w = (image_size, image_size) if image_size is not None else next(iter(sizes))
    c = channels if channels is not None else (1 if greys == len(rels) else 3)
    converted = greys if c == 3 else len(rels) - greys
    return _Headers((int(h), int(w), int(c)), image_size is not None, converted, transparent,
                    upscaled, turned)


def _sizes_named(sizes: dict[tuple[int, int], list[str]], turned: int) -> str:
    """'32x32: 320 images, e.g. a/0.png; 40x48: 1 image, a/odd.png', the commonest size
    first, so that a stray image is found by its name (the first four sizes, then how many)."""
    common = sorted(sizes.items(), key=lambda item: (-len(item[1]), item[0]))
    shown = "; ".join(f"{h}x{w}: " + (f"1 image, {rels[0]}" if len(rels) == 1 else
                                      f"{len(rels)} images, e.g. {rels[0]}")
                      for (h, w), rels in common[:4])
    more = f"; {len(sizes)} sizes in all" if len(sizes) > 4 else ""
    exif = f"; {turned} turned by EXIF in a viewer, {TURNED_FIX}" if turned else ""
    return shown + more + exif


def plan_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
) -> FolderPlan:
    """List and validate the image folder, settle the output shape and compute the fingerprint.

    image_size None: keep the native size (all images must share it); channels None: 1 when
    every image is grey (Pillow mode L / LA / 1 / I;16), else 3. test_fraction: the share of
    each class carved as the test split where there is no test/ folder (None: TEST_FRACTION;
    given for a folder with test/, it is refused: that folder is the test split).
    """
    given_fraction = test_fraction is not None
    test_fraction = TEST_FRACTION if test_fraction is None else test_fraction
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        what = "is a file, not a folder" if os.path.exists(root) else "does not exist"
        npz = (", or read the file with --config.data.name=npz (load_npz)"
               if root.endswith(".npz") and os.path.isfile(root) else "")
        raise DataError(f"image folder {root} {what}: point --config.data.path at a "
                        f"folder of {FORMATS} images, in <class>/ sub-folders or alone{npz}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels={channels!r} is not supported: use 1 (grey) or 3 (RGB)")
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size={image_size!r} is not a positive integer")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction={test_fraction} is not in [0, 1)")
    top = _subdirs(root)
    ignored: list[str] = []
    split_dirs = {d.lower(): d for d in top if d.lower() in ("train", "test")}  # Train/ too
    for split in ("train", "test"):
        same = [d for d in top if d.lower() == split]
        if len(same) > 1:
            raise DataError(f"image folder {root} has {' and '.join(d + '/' for d in same)}: "
                            f"merge them into one {split}/")
    if "train" in split_dirs:
        extra = [d for d in top if d.lower() not in ("train", "test")]
        if extra:
            raise DataError(
                f"image folder {root} mixes {split_dirs['train']}/ with other folders "
                f"({', '.join(extra)}): keep only train/ and test/, or only class folders"
            )
        train = _class_files(root, split_dirs["train"], ignored)
        test = _class_files(root, split_dirs["test"], ignored) if "test" in split_dirs else {}
        class_names = tuple(train)
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise DataError(
                f"image folder {root}/test has classes that train/ lacks ({', '.join(unknown)}): "
                "add them to train/ or remove them from test/"
            )
        if test and given_fraction:
            raise DataError(f"test_fraction={test_fraction} is given, but image folder {root} "
                            f"has its own {split_dirs['test']}/ split: leave it unset")
        if test:
            label = {name: i for i, name in enumerate(class_names)}
            files = {"train": [(r, label[c]) for c in class_names for r in train[c]],
                     "test": [(r, label[c]) for c in class_names for r in test.get(c, [])]}
            layout = "train/test"
        else:
            files, layout = _carve(train, class_names, test_fraction, seed), "train"
    else:
        classes = _class_files(root, "", ignored)
        class_names = tuple(classes)
        files, layout = _carve(classes, class_names, test_fraction, seed), "classes"
    if not files["train"]:
        raise DataError(f"image folder {root} gives an empty train split: add images")
    if not files["test"]:
        raise DataError(f"image folder {root} gives an empty test split: "
                        + _empty_test_fix(layout, test_fraction))
    rels = [rel for split in SPLITS for rel, _ in files[split]]
    if len(rels) >= ANNOUNCED_FILES:  # seconds to minutes before anything else is said
        print(f"checking {len(rels):,} images in {root}: their headers, then their sha256 "
              "(which tells a prepared copy of the same files)", flush=True)
    headers = _infer_shape(root, rels, image_size, channels)
    shape, resize = headers.shape, headers.resize
    files_sha256 = sha256_json(files_entries(root, rels, CHECK_EVERY_S))
    carved = layout != "train/test"
    fingerprint = "folder-sha256:" + sha256_json({
        "format": FORMAT_VERSION, "files": files_sha256, "layout": layout,
        "image_shape": list(shape), "resize": resize,
        "test_fraction": test_fraction if carved else None, "seed": seed if carved else None,
    })
    return FolderPlan(
        root=root, layout=layout, class_names=class_names,
        files={s: tuple(files[s]) for s in SPLITS}, image_shape=shape, resize=resize,
        test_fraction=test_fraction, seed=seed, files_sha256=files_sha256,
        fingerprint=fingerprint, ignored=tuple(ignored), converted=headers.converted,
        transparent=headers.transparent, upscaled=headers.upscaled, turned=headers.turned,
    )


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """One prepared image folder: the plan made by `plan_folder`."""

    plan: FolderPlan | None = dataclasses.field(default=None, repr=False)


class JaxaeFolder(JaxaeBuilder):
    """An image folder (class sub-folders) as raw uint8 images and class labels."""

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {"1.0.0": "Raw uint8 images from an ImageFolder, array_record storage."}

    def _info(self) -> tfds.core.DatasetInfo:
        """A raw HxWxC uint8 image (stored as bytes) and its class label, in plan order."""
        plan: FolderPlan = self.builder_config.plan
        return raw_image_info(self, plan.image_shape, plan.class_names,
                              description=plan.describe())

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        """One generator per split of the plan; nothing is downloaded."""
        del dl_manager
        plan: FolderPlan = self.builder_config.plan
        write_source_record(self, fingerprint=plan.fingerprint, files_sha256=plan.files_sha256,
                            source=plan.describe(), root=plan.root)
        self._corrupt: list[CorruptImage] = []
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (index, {image, label}) in plan order (class, then relative path). An image
        that does not decode is passed over and the others decoded, so that the last split
        names every one of them at once (the preparation, refused then, is not kept)."""
        plan: FolderPlan = self.builder_config.plan
        files = plan.files[split]
        for i, (rel, label) in enumerate(logged_progress(files, f"{split} images")):
            try:
                image = load_image(os.path.join(plan.root, rel), plan.image_shape, plan.resize)
            except CorruptImage as e:
                self._corrupt.append(e)
                continue
            yield i, {"image": image, "label": label}
        if split == SPLITS[-1] and self._corrupt:
            raise _all_corrupt(self._corrupt, plan.root)


def _all_corrupt(corrupt: list[CorruptImage], root: str) -> DataError:
    """One error naming every image that did not decode (the first five, then how many)."""
    if len(corrupt) == 1:
        return corrupt[0]
    shown = "; ".join(f"{os.path.relpath(e.path, root)} ({e.cause})" for e in corrupt[:5])
    return DataError(f"{len(corrupt)} images in {root} are corrupt, truncated or not images: "
                     f"{shown}{'; ...' if len(corrupt) > 5 else ''}: replace or remove them")


def _short_hash(text: str) -> str:
    """The first eight hex digits of the sha256 of `text` (a folder's path, a fingerprint)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _default_name(plan: FolderPlan) -> str:
    """`<folder name>_<hash of its real path>`: the start of every set prepared from it.
    The path's hash gives two folders of one name (projA/images, projB/images) a set each."""
    name = os.path.basename(plan.root.rstrip(os.sep))
    return f"{name}_{_short_hash(os.path.realpath(plan.root))}"


def _shape_suffix(image_shape: tuple[int, int, int]) -> str:
    return f"_{image_shape[0]}x{image_shape[1]}x{image_shape[2]}"


def config_name(name: str, image_shape: tuple[int, int, int]) -> str:
    """Return the TFDS config name: `name` made lower_snake_case, plus '_<H>x<W>x<C>'."""
    base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "folder"
    if base[0].isdigit():
        base = "f" + base
    return base + _shape_suffix(image_shape)


def _builder(name: str, plan: FolderPlan, tfds_dir: str | None) -> JaxaeFolder:
    """The builder of the set `name` (made TFDS-safe, shape appended) prepared from `plan`."""
    with _quiet_custom_config():
        return JaxaeFolder(config=FolderConfig(name=config_name(name, plan.image_shape),
                                               plan=plan), data_dir=tfds_dir)


def _prepared_from(builder: JaxaeFolder, fingerprint: str) -> bool:
    """Whether `builder`'s set is prepared, from the files and options of `fingerprint`."""
    return is_prepared(builder.data_path) and \
        read_source_record(builder.data_path).get("fingerprint") == fingerprint


def _prepared_with(fingerprint: str, plan: FolderPlan, tfds_dir: str | None) -> str | None:
    """The folder of a set of the plan's shape prepared from the files and options of
    `fingerprint`, wherever those files were (it is named by the fingerprint's hash and the
    shape); None where `tfds_dir` holds none."""
    here = os.fspath(_builder(_default_name(plan), plan, tfds_dir).data_path)
    config_dir, version = os.path.dirname(os.path.dirname(here)), os.path.basename(here)
    suffix = f"_{_short_hash(fingerprint)}{_shape_suffix(plan.image_shape)}"
    try:
        names = sorted(d for d in os.listdir(config_dir) if d.endswith(suffix))
    except OSError:  # no set prepared in this data dir yet
        return None
    for name in names:
        where = os.path.join(config_dir, name, version)
        try:
            if is_prepared(where) and read_source_record(where).get("fingerprint") == fingerprint:
                return where
        except DataError:  # its record is damaged: not a set to read
            continue
    return None


def _prepared_elsewhere(plan: FolderPlan, tfds_dir: str | None) -> JaxaeFolder | None:
    """The builder of the set prepared from the same files and options in another folder
    (the folder moved, or a copy of it); None where there is none."""
    where = _prepared_with(plan.fingerprint, plan, tfds_dir)
    if where is None:
        return None
    name = os.path.basename(os.path.dirname(where))
    return _builder(name.removesuffix(_shape_suffix(plan.image_shape)), plan, tfds_dir)


def _trained_set(where: str, plan: FolderPlan, fingerprint: str, name: str, streaming: str,
                 memory_budget_mb: float | None) -> Dataset:
    """The set prepared in `where` from the images a run trained on (`fingerprint`), which
    the folder no longer holds: its own class names, with a note that says so."""
    print(f"note: {plan.root} holds other images than the run trained on (files added, "
          f"removed or edited since): it is evaluated on those it trained on, prepared "
          f"earlier in {where}", file=sys.stderr, flush=True)
    builder = tfds.builder_from_directory(where)  # its info, read once for every split
    return from_prepared(
        *(PreparedSplit(where, split, builder=builder) for split in SPLITS), name=name,
        class_names=tuple(builder.info.features["label"].names),
        title=os.path.basename(os.path.normpath(plan.root)),
        source=f"TFDS {BUILDER_NAME}/{os.path.basename(os.path.dirname(where))} in {where} "
               f"(prepared earlier) from the images {plan.root} held when the run trained",
        fingerprint=fingerprint, streaming=streaming, memory_budget_mb=memory_budget_mb)


def _name_earlier_sets(where: str, plan: FolderPlan) -> None:
    """Print the sets of this shape prepared before from the same folder (with other files
    or options), which stay for the runs that trained on them."""
    suffix = _shape_suffix(plan.image_shape)
    prefix = config_name(_default_name(plan), plan.image_shape).removesuffix(suffix) + "_"
    config_dir = os.path.dirname(os.path.dirname(where))  # <data dir>/jaxae_folder
    here = os.path.basename(os.path.dirname(where))
    earlier = sorted(d for d in os.listdir(config_dir)
                     if d.startswith(prefix) and d.endswith(suffix) and d != here)
    if earlier:
        print(f"{plan.root} was prepared before from other files or options, into "
              f"{', '.join(os.path.join(config_dir, e) for e in earlier)}: kept: a run "
              "trained on them is evaluated on them (evaluate.py at its folder), and resumes "
              "once a folder holds those files again (delete them when none needs them)",
              flush=True)


@reads_paths(path="folder")
@unset_means(test_fraction=TEST_FRACTION)
def load_folder(
    path: str | os.PathLike[str] | None = None,
    *,
    tfds_dir: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    streaming: str = "memory",
    memory_budget_mb: float | None = None,
    prepared_name: str | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    check_fingerprint: Callable[[str], None] | None = None,
    trained_fingerprint: str | None = None,
) -> Dataset:
    """The image folder `path` as a Dataset, prepared into `tfds_dir` the first time.

    The prepared set is named by `prepared_name` and the output shape
    (`jaxae_folder/<prepared_name>_<H>x<W>x<C>`; when that set exists but was made from
    other files or options, DataError says so), or by default by the folder's name, hashes
    of its real path and of its fingerprint, and the shape: a changed folder is prepared
    anew, and the sets of its earlier files are named on the way. `streaming`,
    `memory_budget_mb`: see `jaxae.data.dataset.should_stream`. `check_fingerprint` is
    called with the images' fingerprint before anything is prepared (it raises to refuse
    them: a resumed run's images must be those it trained on). `trained_fingerprint`, an
    earlier run's images (evaluate.py's): where the folder holds other images now and the
    set prepared from those is still in `tfds_dir`, that set is read instead.
    """
    if not path:
        raise DataError("data set folder needs a folder: set --config.data.path=FOLDER, or "
                        f"call load_folder(FOLDER) (of {FORMATS} images, in <class>/ "
                        "sub-folders or alone)")
    plan = plan_folder(path, image_size=image_size, channels=channels,
                       test_fraction=test_fraction, seed=seed)
    name = prepared_name or os.path.basename(plan.root.rstrip(os.sep))
    if trained_fingerprint not in (None, plan.fingerprint) and not prepared_name and \
            (trained := _prepared_with(trained_fingerprint, plan, tfds_dir)) is not None:
        return _trained_set(trained, plan, trained_fingerprint, name, streaming,
                            memory_budget_mb)
    if check_fingerprint is not None:
        check_fingerprint(plan.fingerprint)
    builder = _builder(prepared_name or f"{_default_name(plan)}_{_short_hash(plan.fingerprint)}",
                       plan, tfds_dir)
    if not prepared_name and not is_prepared(builder.data_path):
        # a set prepared from these very files before fingerprints named the sets
        earlier = _builder(_default_name(plan), plan, tfds_dir)
        if _prepared_from(earlier, plan.fingerprint):
            builder = earlier
        elif moved := _prepared_elsewhere(plan, tfds_dir):
            builder = moved  # the same files in a folder that moved: not prepared twice
    config, where = builder.builder_config.name, os.fspath(builder.data_path)
    if not is_prepared(where) and prepare(builder, f"image folder {plan.root}"):
        how = "prepared now"
        if not prepared_name:
            _name_earlier_sets(where, plan)
    else:  # earlier, or by another process while this one waited for it
        _check_same_source(where, plan)
        how = "prepared earlier"
    splits = [PreparedSplit(where, split, builder=builder) for split in SPLITS]
    return from_prepared(
        *splits, name=name, class_names=plan.class_names,
        title=os.path.basename(os.path.normpath(plan.root)),  # pictures name the folder
        source=f"TFDS {BUILDER_NAME}/{config} in {where} ({how}) from {plan.describe()}",
        fingerprint=plan.fingerprint, streaming=streaming, memory_budget_mb=memory_budget_mb)


class _DropCustomConfigWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Using custom data configuration" not in record.getMessage()


@contextlib.contextmanager
def _quiet_custom_config() -> Iterator[None]:
    """Without TFDS's warning that a builder config made on the fly is used (every folder's)."""
    drop = _DropCustomConfigWarning()
    logger = logging.getLogger("absl")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _check_same_source(path: str, plan: FolderPlan) -> None:
    """Raise DataError when the prepared set in `path` was made from other files or options."""
    record = read_source_record(path)
    if record.get("fingerprint") == plan.fingerprint:
        return
    if record.get("files_sha256") == plan.files_sha256:
        what = "the same files with other options (test split, resizing) or an older format"
    elif record.get("root") == plan.root:
        what = "its earlier files (some were added, removed or edited since)"
    else:
        what = f"the files of {record.get('root', 'an unrecorded folder')}"
    raise DataError(
        f"the data set prepared in {path} was made from {what}, not from what {plan.root} "
        "holds now: delete that folder so it is prepared again, or give another prepared_name"
    )
