"""`safeload verify DIR --key PUB`: the one-off key is what each weight file's admission checks.

Hostile review B (2026-12-07), finding 7: the signature verified with the given key, then each
weight file's admission re-verified `model.sig` against the store alone ("signed by a key that
is not in the trust store"), and a signature outside the folder left the weights "unsigned".
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from safeload.verifying import verify_directory


def test_an_in_place_signature_verifies_with_the_given_key(oms: Path) -> None:
    # the fixture README's expected verdict: exit 0
    out = verify_directory(oms / "model-inplace", key=oms / "keys" / "p256.pub.pem")
    assert out.weights


def test_a_signature_outside_the_folder_covers_the_weights(
        oms: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        out = verify_directory(oms / "model", oms / "signatures" / "key-p256.sig",
                               key=oms / "keys" / "p256.pub.pem")
    assert out.weights
    assert "unsigned" not in caplog.text
