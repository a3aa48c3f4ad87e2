"""Data side of the AVS toolkit: media decoding, manifests, HDF5 shards, parallel maps and features.

Nothing in this package imports ``train`` or ``stages``; data flows one way:
raw media -> shards -> features -> model -> metrics.
"""

__version__ = "0.1.0"
