"""The scrubber's fast path (one substring pass over the joined strings) never passes an entry
the full per-string scrub would change."""

from __future__ import annotations

import random
from typing import Any

import pytest

from safeload.provenance import scrub

_FRAGMENTS = ["hf_", "A" * 20, "a1" * 12, "api_org_", "ghp_", "github_pat_", "AKIA", "ASIA",
              "0123456789ABCDEF", "Bearer ", "bEaReR\t", "://", "https://", "user:pw@", "@",
              "?", "&", "token=", "sig=", "X-Amz-Signature=", "/tmp/model.bin", " ", "\n", "_",
              "-", ".", "=", "safetensors", "gh", "hf", "\u00e9"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 6)))


def _payload(rng: random.Random) -> dict[str, Any]:
    return {"path": _text(rng), "nested": {"a": _text(rng), "b": [_text(rng), 3, None]},
            "list": [_text(rng) for _ in range(rng.randint(0, 3))], "n": 1}


def _full_scrub(payload: dict[str, Any], secrets: list[str]) -> Any:
    return scrub._scrub(payload, "", secrets, [])


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_passes_only_entries_the_full_scrub_leaves_alone(seed: int) -> None:
    rng = random.Random(seed)
    changed = 0
    for _ in range(3000):
        payload = _payload(rng)
        secrets = [_text(rng) for _ in range(rng.randint(0, 2))]
        secrets = [s for s in secrets if len(s) >= 8]
        if _full_scrub(payload, secrets) != payload:
            changed += 1
            assert scrub._may_hold_secret(payload, secrets), payload
    assert changed > 100  # the generator does produce secrets


def test_a_clean_entry_is_returned_as_it_is_and_a_token_is_still_redacted() -> None:
    clean = {"path": "/data/models/bert/model.safetensors", "sha256": "ab" * 32}
    assert scrub.scrub_entry(clean) == clean
    out = scrub.scrub_entry({"path": "/data/x", "source": {"url": "https://h/x?token=s3cr3t"}})
    assert "s3cr3t" not in str(out)
    assert out["warnings"] == ["redacted a credential-like string from source.url"]
