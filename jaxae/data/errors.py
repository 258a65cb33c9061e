"""The data errors: each a one-line message naming the file or images at fault and the fix."""

from __future__ import annotations


class DataError(ValueError):
    """A data set is missing, damaged or unreachable; the message says which file and the fix."""

    def __init__(self, message: str) -> None:
        """Keep the message on one line, whatever the wrapped exception text holds."""
        super().__init__(" ".join(str(message).split()))


class DataUnavailable(DataError):
    """A data set that is not prepared, has no local files and cannot be downloaded here
    (offline): a caller with other ways to get it names its own (`jaxae.experiments`)."""


class MixedImageSizes(DataError):
    """The images of a data set read at their native size differ in size. `problem` names
    them; the message adds a new run's fix (a resize), which evaluating or resuming a run
    replaces (`build.load_run_data`): there a resize would change the trained model."""

    def __init__(self, problem: str) -> None:
        self.problem = " ".join(problem.split())
        super().__init__(f"{problem}: set --config.data.image_size (load_folder's "
                         "image_size=) to resize and centre-crop them to one size, or remove "
                         "the images of other sizes")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        """Pickled (for another process) as the problem alone: the fix is added once."""
        return MixedImageSizes, (self.problem,)


class CorruptImage(DataError):
    """An image file that does not decode (corrupt, truncated, or no image); `path` and
    `cause` let a caller that meets several name them all at once."""

    def __init__(self, path: str, cause: str) -> None:
        self.path, self.cause = path, cause
        super().__init__(f"image {path} is corrupt, truncated or not an image ({cause}): "
                         "replace or remove it")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return CorruptImage, (self.path, self.cause)
