"""GLFA photorealistic style transfer (LCT transform, WCE loss): the machinery behind the
commands at the repository root, and the Python API.

    from glfa import Stylizer
    stylizer = Stylizer.from_checkpoints()      # the shipped photo model
    result = stylizer(content, style)           # PIL images (or tensors) in, the same kind out

The package sits one floor below the root and imports the method files there (``net``,
``function``, ``sampler``), which need the repository root on ``sys.path``: the root commands,
``torch.hub`` and a Python session started in the root have it.
"""
from glfa.inference import Stylizer
from glfa.options import RunOptions, StylizeOptions
from glfa.paths import REPO_ROOT, default_vgg
from glfa.runfolder import shipped_model
from glfa.smoothing import Smoothing

__all__ = ["RunOptions", "Smoothing", "StylizeOptions", "Stylizer", "REPO_ROOT", "default_vgg", "shipped_model"]
