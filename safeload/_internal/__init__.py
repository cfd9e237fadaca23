"""Internal and unstable: nothing here is subject to any stability guarantee.

Owns the leaves every layer shares (L0: text escaping, strict JSON, paths, atomic writes,
digests, the held file, the Hub cache layout, shard indexes, torch's map_location) and, higher
up, the tensor builders and the sandbox runner (L1), the licence/provenance entry builder (L2)
and the conversion engine (L3). An `_internal` module imports only modules of its own layer or
below (see tests/test_architecture.py); the L0 ones import only errors and each other.
"""
