"""Datasets and networks."""
from prunevo.zoo.datasets import DATASETS, Splits, load_dataset
from prunevo.zoo.nets import SMALL_NETS, build_small_net

__all__ = ["DATASETS", "SMALL_NETS", "Splits", "build_small_net", "load_dataset"]
