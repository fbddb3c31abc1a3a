"""transfer: apply formulas to new models and datasets (see issue #3)."""
