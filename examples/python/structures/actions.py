"""Example actions: structures, objects that live elsewhere and travel as references (on
their own, and inside lists, dicts and models; the Python twin of examples/structures)."""

from typing import Optional

from rekuest_guest import ActionError, model, register, structure


@structure(identifier="@mikro/image")
class Image:
    """An image in mikro, referenced as `image:<id>`."""

    def __init__(self, id: int) -> None:
        self.id = id

    def shrink(self) -> str:
        return f"image:{self.id}"

    @classmethod
    def expand(cls, reference: str) -> "Image":
        if not reference.startswith("image:"):
            raise ValueError('an image reference starts with "image:"')
        id = reference[len("image:") :]
        if not id.isdigit():
            raise ValueError(f'"{id}" is not an image id (a number)')
        return cls(int(id))


@register
def describe_image(image: Image) -> str:
    """Describe an image.

    Args:
        image: the image to describe
    """
    return f"image {image.id} in mikro"


@register
def crop(image: Image, width: int) -> Image:
    """Crop an image to a width.

    The cropped copy is a new image with id `<id><width>` (the width padded to three digits).

    Args:
        image: the image to crop
        width: the width in pixels, 1 to 999

    Returns:
        The cropped copy.
    """
    if not 1 <= width <= 999:
        raise ActionError(f"width must be between 1 and 999, got {width}")
    return Image(image.id * 1000 + width)


@register
def images(n: int) -> list[Image]:
    """List the first images.

    Args:
        n: how many images to list
    """
    return [Image(id) for id in range(1, n + 1)]


@register
def newest(images: list[Image]) -> Optional[Image]:
    """The image with the highest id, if any.

    Args:
        images: the images to choose from
    """
    return max(images, key=lambda image: image.id, default=None)


@model
class Labelled:
    """An image with a label.

    Attributes:
        image: The image.
        label: Its label.
    """

    image: Image
    label: str


@register
def label(images: dict[str, Image]) -> list[Labelled]:
    """Label images with their names.

    Args:
        images: the images by name

    Returns:
        The images labelled with their names, sorted by name.
    """
    return [Labelled(image=image, label=name) for name, image in sorted(images.items())]


@register
def by_label(labelled: list[Labelled]) -> dict[str, Image]:
    """Look up labelled images by their labels.

    Args:
        labelled: the labelled images

    Returns:
        The images by label (the last one wins when labels repeat).
    """
    return {item.label: item.image for item in labelled}
