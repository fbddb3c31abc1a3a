"""Datasets and networks.

Importing the package registers the built-in datasets (``zoo.images``), so that ``zoo.registry`` lists them
whichever zoo module is imported first.
"""
from prunevo.zoo import images as _images  # noqa: F401  (registers the built-in datasets)
from prunevo.zoo.datasets import Splits, in_memory_datasets, load_dataset
from prunevo.zoo.nets import SMALL_NETS, build_small_net

__all__ = ["SMALL_NETS", "Splits", "build_small_net", "in_memory_datasets", "load_dataset"]
