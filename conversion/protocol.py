"""The wire contract between the parent and the converter child: both sides import this.

The child writes `OUTPUT_NAME` in the output folder it was given, with the original structure
(JSON) under `STRUCTURE_KEY` and the digest of the bytes it read under `SOURCE_SHA256_KEY` in
the safetensors metadata, and prints one JSON result on stdout. The parent believes none of it
until it has checked the file itself.
"""

OUTPUT_NAME = "model.safetensors"
STRUCTURE_KEY = "safeload.structure"
SOURCE_SHA256_KEY = "safeload.source_sha256"

__all__ = ["OUTPUT_NAME", "SOURCE_SHA256_KEY", "STRUCTURE_KEY"]
