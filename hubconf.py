"""``torch.hub`` entry point: ``torch.hub.load(REPO, "photo")`` (a local clone with
``source="local"``) returns the shipped photo model as a ``glfa.Stylizer``. Called with a content
and a style PIL image, it returns the stylised PIL image at the content's size."""
from glfa import Stylizer

dependencies = ["numpy", "PIL", "skimage", "torch", "torchvision"]


def photo(decoder: str | None = None, transform: str | None = None, vgg: str | None = None, **options) -> Stylizer:
    """The photorealistic model (LCT at relu3_1) shipped in ``experiments/photo/``, on the GPU when
    present, finishing results at the working size like ``test.py``. ``decoder``, ``transform``
    and ``vgg`` name other checkpoint files; ``options`` (``run=``/``options=``, a ``RunOptions``
    and a ``StylizeOptions``, or their fields by name: ``device``, ``smooth``, ``working_size``,
    ``tile_size``, ``amp_dtype``…) go to ``Stylizer``."""
    return Stylizer.from_checkpoints(decoder=decoder, transform=transform, vgg=vgg, mode="photo", **options)
