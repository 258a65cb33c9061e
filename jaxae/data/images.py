"""Image size and channel options, the same for every source: decode a file, resize and
centre-crop, grey <-> RGB.

`config.data.image_size` S resizes every image (bicubic, antialiased) so that it covers SxS,
then keeps the centre SxS; `config.data.channels` 1 makes RGB grey with Pillow's ITU-R 601-2
luma, 3 repeats a grey channel. A folder of files is converted while it is prepared; arrays
from any other source (TFDS, CIFAR-10, MNIST, .npz) go through `ImageOptions.apply`, which
does the same to uint8 arrays.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxae.data.errors import CorruptImage, DataError

RESAMPLE = Image.Resampling.BICUBIC
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
GREY_MODES = frozenset({"1", "L", "LA", "La", *SIXTEEN_BIT_MODES})


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """The output size (None: as stored) and channels (None: as stored) of a data set."""

    image_size: int | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.image_size is not None and (not isinstance(self.image_size, int)
                                            or self.image_size < 1):
            raise DataError(f"image_size={self.image_size!r} must be a positive integer")
        if self.channels not in (None, 1, 3):
            raise DataError(f"channels={self.channels!r} must be 1 (grey) or 3 (RGB)")

    def shape(self, stored: tuple[int, int, int]) -> tuple[int, int, int]:
        """The (H, W, C) images of `stored` shape come out as."""
        height, width, channels = stored
        if self.image_size is not None:
            height = width = self.image_size
        return height, width, self.channels or channels

    def changes(self, stored: tuple[int, int, int]) -> bool:
        """Whether images of `stored` shape are changed at all."""
        return self.shape(stored) != tuple(stored)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] -> uint8 [N, *self.shape(...)]; the array itself if unchanged.

        Channels are converted first, then each image is resized and cropped, as a file is.
        """
        stored = tuple(images.shape[1:])
        if not self.changes(stored):
            return images
        out_h, out_w, out_c = self.shape(stored)
        if out_c != stored[2]:
            images = convert_channels(images, out_c)
        if (out_h, out_w) == stored[:2]:
            return images
        out = np.empty((len(images), out_h, out_w, out_c), np.uint8)
        for i, image in enumerate(images):
            pil = Image.fromarray(image[..., 0] if out_c == 1 else image)
            out[i] = np.asarray(fit(pil, out_h, out_w)).reshape(out_h, out_w, out_c)
        return out

    def describe(self, stored: tuple[int, int, int]) -> str:
        """'' when nothing changes, else e.g. 'resized and centre-cropped to 64x64x3'."""
        if not self.changes(stored):
            return ""
        height, width, channels = self.shape(stored)
        what = []
        if (height, width) != tuple(stored[:2]):
            what.append(f"resized and centre-cropped to {height}x{width}")
        if channels != stored[2]:
            what.append("made grey" if channels == 1 else "made RGB")
        return " and ".join(what) + f" ({height}x{width}x{channels})"


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> uint8 [...]: Pillow's integer ITU-R 601-2 luma (its "L" conversion)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 [N, H, W, C] with C = 1 or 3 -> the same images with `channels` channels."""
    if images.shape[-1] == channels:
        return images
    if channels == 1:
        return luma(images)[..., None]
    return np.repeat(images, 3, axis=-1)


def too_large(path: str, error: Exception) -> str:
    """The line for an image past Pillow's decompression-bomb limit."""
    return (f"image {path} is larger than Pillow reads ({error}): shrink it, or remove it "
            "from the folder")


def fit(image: Image.Image, height: int, width: int) -> Image.Image:
    """Resize (bicubic, antialiased) so that the image covers height x width, then keep the
    centre height x width."""
    if (image.height, image.width) == (height, width):
        return image
    scale = max(height / image.height, width / image.width)
    new_w = max(width, round(image.width * scale))
    new_h = max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), RESAMPLE)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def has_transparency(image: Image.Image) -> bool:
    """Whether an image (opened; its header is enough) has an alpha channel or a
    transparent palette entry: composited onto black when decoded (`load_image`)."""
    return image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        image.mode == "P" and "transparency" in image.info)


EXIF_ORIENTATION = 0x0112  # the EXIF tag of how a viewer turns the stored pixels (1: as stored)


def turned_by_exif(image: Image.Image) -> bool:
    """Whether an image (opened; its header is enough) carries an EXIF orientation that a
    viewer applies (a phone's portrait photo): images are read as stored, as
    torchvision's ImageFolder reads them, so such a one is sideways or mirrored."""
    try:
        return image.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1)
    except (OSError, SyntaxError, ValueError):  # a damaged EXIF block: the pixels still read
        return False


class UnsupportedMode(ValueError):
    """A whole image in a pixel format the images are not converted from."""


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """A decoded image as 8-bit 'L' or 'RGB': 16-bit grey scaled to 8 bits, transparency
    composited onto black."""
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray((np.asarray(image, np.uint32) >> 8).astype(np.uint8), "L")
    elif image.mode in ("I", "F"):
        raise UnsupportedMode(f"32-bit mode {image.mode} is not supported, save it as 8-bit PNG")
    if has_transparency(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image if image.mode == mode else image.convert(mode)


def load_image(path: str, image_shape: tuple[int, int, int], resize: bool = True
               ) -> np.ndarray:
    """Decode one image file to uint8 [H, W, C] with Pillow.

    16-bit grey is scaled to 8 bits; transparency is composited onto black; RGB -> grey is
    Pillow's luma, grey -> RGB repeats the channel; with `resize` the image is fitted to HxW
    (`fit`), else it must be HxW already. EXIF orientation is ignored (as in torchvision's
    ImageFolder; `turned_by_exif`).
    """
    height, width, channels = image_shape
    try:
        with Image.open(path) as image:
            image.load()
            converted = _to_mode(image, "L" if channels == 1 else "RGB")
            image = converted.copy() if converted is image else converted  # usable once closed
    except Image.DecompressionBombError as e:
        raise DataError(too_large(path, e)) from None
    except UnsupportedMode as e:
        raise DataError(f"image {path} cannot be used: {e}") from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise CorruptImage(path, str(e)) from None
    if (image.height, image.width) != (height, width):
        if not resize:
            raise DataError(f"image {path} is {image.height}x{image.width}, not {height}x{width}"
                            " like the others: give an image_size (--config.data.image_size) "
                            "to resize them all")
        image = fit(image, height, width)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array
