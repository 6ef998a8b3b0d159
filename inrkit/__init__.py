"""inrkit: implicit neural representations from the command line and from Python.

    import inrkit
    field = inrkit.load("out/demo/camera.safetensors")   # a torch.nn.Module
    values = field(coords)                                # coords (..., d) in [0, 1] -> (..., channels)
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed

try:
    __version__ = _installed("inrkit")  # pyproject.toml, as installed; artifacts record the same
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def load(path, kind=None, device="cpu"):
    """Rebuild the object an artifact holds, in eval mode on `device`: a field, a generator, a functa model or a
    functaset (see inrkit.models.registry, which lists the families and their kinds)."""
    from inrkit.models import registry  # here, so that `import inrkit` stays light (no torch)

    return registry.load(path, kind, device)


__all__ = ["load", "__version__"]
