"""The local Hugging Face cache: what is in it, and converting its pickles once, in the sandbox.

Modules: `report` (statuses and result types), `scan` (walk and classify), `convert` (one
converter child per revision), `hub_write` (opt-in writes into snapshots). Layer L5: each file
goes through the pipeline's verify and admit stages (`safeload.pipeline`); no gate lives here.

`scan_cache` lists every repo revision (walking the cache by huggingface_hub's layout, see
`_hub_scan` for why not `scan_cache_dir`) and classifies each weight file by its bytes:
safetensors, a clean pickle (convertible, or already in safeload's converted store), unsafe,
tampered, malformed (a dangling link), or refused: a snapshot entry that is not what the Hub
client writes, a snapshot that names no commit, or what the trust store, the licence policy or
`pickles: refuse` would refuse at load (the same decisions, nothing recorded). The cache names an
LFS blob by the sha256 of its content, which is a free integrity check: the name is read from
the FIRST symlink hop only (hub 2.x may chain a repo blob to a shared Xet blob whose name is not
a sha256), and a blob whose bytes do not match it is refused. Scanning writes nothing.

`convert_cache` converts every clean pickle, one sandboxed child per repo revision, into the
converted store keyed by the source digest (where `safeload.load` and `from_pretrained` find
it). The Hugging Face snapshot is left untouched unless `write_to_hub_cache` is set, and nothing
is ever deleted but `.no_exist` markers that would hide a written file. An interrupted run leaves
no partial file (outputs are written under temporary names and renamed into place), and a rerun
skips what is done.

`scan_torch_hub` / `convert_torch_hub` (module `torch_hub`) do the same for the torch hub cache
(`torch.hub.get_dir()/checkpoints`), reported as one revision of repo type `torch-hub`.
"""

from safeload.hfcache.convert import convert_cache
from safeload.hfcache.hub_write import hub_name
from safeload.hfcache.report import (
    BAD_STATUSES,
    HUB_SIGNATURE_WARNING,
    STATUSES,
    WEIGHT_SUFFIXES,
    CacheFile,
    CacheRevision,
    CacheScan,
    ConvertReport,
    Outcome,
    Progress,
    default_cache_dir,
)
from safeload.hfcache.scan import scan_cache
from safeload.hfcache.torch_hub import convert_torch_hub, scan_torch_hub

__all__ = ["BAD_STATUSES", "HUB_SIGNATURE_WARNING", "STATUSES", "WEIGHT_SUFFIXES", "CacheFile",
           "CacheRevision", "CacheScan", "ConvertReport", "Outcome", "Progress", "convert_cache",
           "convert_torch_hub", "default_cache_dir", "hub_name", "scan_cache", "scan_torch_hub"]
