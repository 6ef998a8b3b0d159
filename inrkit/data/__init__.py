"""The data layer: one `--data` string for every stage, packing to shards, and sampling for training.

    ds = open_dataset("photos/", 64)                 # or a .zip, shards, builtin:photos?count=2000
    image, label = ds[0]                             # float32 (C, 64, 64) in [-1, 1]; label -1 if none
    batches = make_loader(ds, 64, seed=0, start=0)   # infinite, resumable, split across ranks/workers
"""

from inrkit.data.dataset import DATA_HELP, ImageDataset, open_dataset
from inrkit.data.loader import make_loader
from inrkit.data.pack import PackSummary, pack_dataset
from inrkit.data.sampler import InfiniteSampler
from inrkit.data.show import ShowReport, show_dataset

__all__ = [
    "DATA_HELP",
    "ImageDataset",
    "InfiniteSampler",
    "PackSummary",
    "ShowReport",
    "make_loader",
    "open_dataset",
    "pack_dataset",
    "show_dataset",
]
