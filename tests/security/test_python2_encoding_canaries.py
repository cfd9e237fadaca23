"""`encoding="latin1"` is honoured now: it changes how Python 2 strings decode, never what runs.

Each payload only creates the marker; the control shows it fires under
`torch.load(encoding="latin1")`; safeload refuses it under that encoding and the default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from canary_lib import Fires, Refused, text_open

import safeload
from safeload.errors import UnsafeCheckpointError

OPEN_RE = r"(io|builtins)\.open"
TORCH_LATIN1 = "import torch, sys\ntorch.load(sys.argv[1], weights_only=False, encoding='latin1')"


def _cases(m: Path) -> dict[str, bytes]:
    call = text_open(m)
    return {
        # a latin-1 8-bit string (not UTF-8), popped, then the call
        "after_a_latin1_string": b"\x80\x02U\x02\xe9\xe90" + call + b".",
        # the call's argument is itself a latin-1 8-bit string
        "latin1_string_as_argument": b"\x80\x02cbuiltins\nopen\nU" + bytes([len(str(m))])
        + str(m).encode("latin-1") + b"U\x01w\x86R.",
        # a Python 2 numpy array whose data is an 8-bit string, then the call
        "after_py2_numpy_data": (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                                 b"K\x00\x85U\x01b\x87R(K\x01K\x01\x85cnumpy\ndtype\nU\x02u1"
                                 b"K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff"
                                 b"\xff\xffK\x00tb\x89U\x01\xfftb0" + call + b"."),
    }


@pytest.mark.parametrize("case", sorted(_cases(Path("x"))))
def test_payload_under_latin1(case: str, tmp_path: Path, marker: Path, fires: Fires,
                              refused: Refused) -> None:
    path = tmp_path / "py2.pt"
    path.write_bytes(_cases(marker)[case])
    assert fires(path, TORCH_LATIN1)
    with pytest.raises(UnsafeCheckpointError, match=OPEN_RE):
        safeload.load(path, encoding="latin1")
    assert not marker.exists()
    refused(path, UnsafeCheckpointError)  # the default encoding and `safeload scan` too
