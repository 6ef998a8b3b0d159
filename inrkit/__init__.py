"""inrkit: implicit neural representations from the command line and from Python.

    import inrkit
    field = inrkit.load("out/demo/camera.safetensors")   # a torch.nn.Module
    values = field(coords)                                # coords (..., d) in [0, 1] -> (..., channels)
"""

__version__ = "0.1.0"


def load(path, kind=None):
    """Rebuild the object an artifact holds (see inrkit.core.artifacts.load)."""
    from inrkit.core.artifacts import load as _load

    return _load(path, kind)


__all__ = ["load", "__version__"]
