"""Model card parsing: the real all-MiniLM-L6-v2 card, and hostile cards that must only warn."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeload import modelcard
from safeload.modelcard import (
    MAX_DEPTH,
    MAX_FRONT_MATTER_BYTES,
    ModelCard,
    find_model_card,
    parse_model_card,
    read_model_card,
)

ASSET = Path(__file__).parent.parent / "assets" / "all-minilm-l6-v2" / "README.md"
MINILM_DATASETS = (
    "s2orc", "flax-sentence-embeddings/stackexchange_xml", "ms_marco", "gooaq",
    "yahoo_answers_topics", "code_search_net", "search_qa", "eli5", "snli", "multi_nli",
    "wikihow", "natural_questions", "trivia_qa", "embedding-data/sentence-compression",
    "embedding-data/flickr30k-captions", "embedding-data/altlex", "embedding-data/simple-wiki",
    "embedding-data/QQP", "embedding-data/SPECTER", "embedding-data/PAQ_pairs",
    "embedding-data/WikiAnswers",
)
FAST = 30.0  # seconds: a hang guard, not a speed goal (a loaded 2-core CI machine took >5 s)


@pytest.fixture(autouse=True, params=["libyaml", "pure-python"])
def yaml_events(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both event parsers: libyaml, and PyYAML's fallback without it."""
    if request.param == "pure-python":
        monkeypatch.setattr(modelcard, "_Loader", modelcard._PyLoader)
    elif modelcard._Loader is modelcard._PyLoader:
        pytest.skip("PyYAML without libyaml")
    return str(request.param)


def _timed(data: str | bytes) -> ModelCard:
    start = time.perf_counter()
    card = parse_model_card(data)
    assert time.perf_counter() - start < FAST
    return card


def _card(yaml_text: str) -> str:
    return f"---\n{yaml_text}\n---\n# Model\n"


def test_real_minilm_card() -> None:
    card = read_model_card(ASSET)
    assert card.warnings == ()
    assert card.license == ("apache-2.0",)
    assert card.datasets == MINILM_DATASETS
    assert card.library_name == "sentence-transformers"
    assert card.pipeline_tag == "sentence-similarity"
    assert "sentence-transformers" in card.tags
    assert card.base_model == ()


def test_fields_and_shapes() -> None:
    card = parse_model_card(_card(
        "license: other\nlicense_name: acme-model-license\n"
        "license_link: https://example.com/LICENSE\nbase_model: org/base\n"
        "datasets: [a/b, c]\ntags: [x, x, y]\nlanguage: en"))
    assert card.license == ("other",)
    assert card.license_name == "acme-model-license"
    assert card.license_link == "https://example.com/LICENSE"
    assert card.base_model == ("org/base",)
    assert card.datasets == ("a/b", "c")
    assert card.tags == ("x", "y")  # duplicates folded
    assert card.warnings == ()


def test_scalars_stay_text() -> None:
    # YAML 1.1 would read these as a float, a bool and a date: a licence tag is text.
    card = parse_model_card(_card("license: 2.0\ndatasets: [yes, 2001-01-01]"))
    assert card.license == ("2.0",)
    assert card.datasets == ("yes", "2001-01-01")


@pytest.mark.parametrize("text", [
    "", "# just markdown\n", "license: mit\n", "\n\n---\n", "---", "--- \n",
])
def test_no_front_matter_gives_an_empty_card(text: str) -> None:
    card = parse_model_card(text)
    assert card.license == ()


def test_blank_lines_before_the_fence_and_crlf() -> None:
    card = parse_model_card("\r\n\r\n---\r\nlicense: mit\r\n---\r\nbody")
    assert card.license == ("mit",)
    assert card.warnings == ()


def test_indented_fence_does_not_close_the_metadata() -> None:
    card = parse_model_card("---\nlicense: mit\ndescription: |\n  ---\n  not the end\n---\n")
    assert card.license == ("mit",)


# --------------------------------------------------------------------------------------------
# Hostile cards: a warning, never an exception, a hang or code execution


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("license: mit")
    card = _timed(_card("\n".join(lines)))
    assert card.license == ()
    assert any("anchors" in w for w in card.warnings)


def test_aliases_without_anchor_definitions_are_refused() -> None:
    card = _timed(_card("license: *undefined"))
    assert card.license == ()
    assert card.warnings


def test_merge_keys_need_aliases_and_are_refused() -> None:
    card = _timed(_card("base: &b {license: mit}\nother:\n  <<: *b"))
    assert card.warnings and card.license == ()


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {canary}']",
    "!!python/object/new:os.system ['touch {canary}']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!custom 1",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {canary}']",
])
def test_tags_are_never_constructed_and_make_the_licence_ambiguous(payload: str,
                                                                   tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    card = _timed(_card("license: " + payload.format(canary=canary)))
    assert card.license_ambiguous
    assert any("tags" in w for w in card.warnings)
    assert not canary.exists()


def test_a_tag_elsewhere_does_not_hide_the_licence() -> None:
    # huggingface_hub (yaml.safe_load) reads this card's licence: so does safeload, and marks
    # it ambiguous rather than dropping the whole metadata ("no licence").
    card = parse_model_card(_card("license: cc-by-nc-4.0\ntags: !!set {a: null}"))
    assert card.license == ("cc-by-nc-4.0",) and card.license_ambiguous


@pytest.mark.parametrize("text", [
    "license: " + "[" * 100_000 + "]" * 100_000,
    "license: " + "{a: " * 10_000 + "b" + "}" * 10_000,
    "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "x",
    "license: " + "- " * 50_000 + "x",
])
def test_deep_nesting_is_refused(text: str) -> None:
    card = _timed(_card(text))
    assert card.license == ()
    assert card.warnings


def test_huge_front_matter_is_not_parsed() -> None:
    body = "license: mit\n" + "x: " + "y" * (MAX_FRONT_MATTER_BYTES + 10) + "\n"
    card = _timed(_card(body))
    assert card.license == ()
    assert any("larger than" in w for w in card.warnings)


def test_huge_card_body_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(_card("license: mit") + "z" * (20 << 20))
    start = time.perf_counter()
    assert read_model_card(path).license == ("mit",)
    assert time.perf_counter() - start < FAST


def test_front_matter_just_under_the_cap_parses() -> None:
    filler = "pad: " + "y" * (MAX_FRONT_MATTER_BYTES - 100) + "\n"
    card = _timed(_card("license: mit\n" + filler))
    assert card.license == ("mit",)


def test_many_nodes_stay_bounded() -> None:
    card = _timed(_card("license: mit\nx: [" + ",".join(["1"] * 150_000) + "]"))
    assert card.license == ()
    assert any("nodes" in w for w in card.warnings)


def test_a_duplicate_licence_keeps_every_copy_and_is_ambiguous() -> None:
    card = parse_model_card(_card("license: mit\nlicense: cc-by-nc-4.0\ndatasets: [a]"))
    assert card.license == ("mit", "cc-by-nc-4.0") and card.license_ambiguous
    assert card.datasets == ("a",) and card.ambiguous == ("license",)
    assert any("'license' appears more than once" in w for w in card.warnings)


def test_a_duplicate_single_valued_field_is_void() -> None:
    card = parse_model_card(_card("license: mit\nlibrary_name: a\nlibrary_name: b"))
    assert card.library_name is None and card.ambiguous == ("library_name",)
    assert card.license == ("mit",) and not card.license_ambiguous


@pytest.mark.parametrize(("text", "fragment"), [
    ("license: {a: b}", "'license' is neither"),
    ("license_name: [a]", "'license_name' is not a string"),
    ("datasets: [a, [b], {c: d}]", "2 entries are not short strings"),
    ("license_link: " + "h" * 5000, "longer than"),
    ("datasets: [" + ",".join(f"d{i}" for i in range(2000)) + "]", "only the first"),
    ("- a\n- b", "not a mapping"),
    ("key: [unclosed", "not valid YAML"),
    ("? [a, b]\n: c", "as a key"),
    ("a: b\n\x07: c", "not valid YAML"),
])
def test_malformed_fields_warn(text: str, fragment: str) -> None:
    card = _timed(_card(text))
    assert any(fragment in w for w in card.warnings), card.warnings


def test_invalid_utf8_warns() -> None:
    card = parse_model_card(b"---\nlicense: \xff\xfe\n---\n")
    assert card.license == ()
    assert any("UTF-8" in w for w in card.warnings)


def test_unclosed_front_matter_warns() -> None:
    card = parse_model_card("---\nlicense: mit\n")
    assert card.license == ()
    assert any("not closed" in w for w in card.warnings)


def test_warnings_do_not_echo_card_content() -> None:
    card = parse_model_card(_card("license: [\x1b]52;c;evil\x07"))
    assert card.warnings
    assert all("\x1b" not in w and "evil" not in w for w in card.warnings)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(lambda s: "---\n" + s + "\n---\n"))
def test_arbitrary_input_never_raises(data: bytes | str) -> None:
    card = parse_model_card(data)
    assert isinstance(card, ModelCard)


# --------------------------------------------------------------------------------------------
# Finding and reading the card


def _snapshot(tmp_path: Path) -> Path:
    """A Hugging Face cache snapshot: files are links into ../../blobs, as the Hub client makes."""
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    blobs = repo / "blobs"
    snap = repo / "snapshots" / ("c" * 40)
    (snap / "1_Pooling").mkdir(parents=True)
    blobs.mkdir()
    (blobs / "readme-blob").write_bytes(ASSET.read_bytes())
    (blobs / "weights-blob").write_bytes(b"weights")
    (snap / "README.md").symlink_to(Path("../../blobs/readme-blob"))
    (snap / "model.safetensors").symlink_to(Path("../../blobs/weights-blob"))
    (snap / "1_Pooling" / "config.json").write_text("{}")
    return snap


def test_find_card_in_hf_snapshot(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    assert find_model_card(snap / "model.safetensors") == snap / "README.md"
    assert find_model_card(snap / "1_Pooling" / "config.json") == snap / "README.md"
    card = read_model_card(snap / "README.md")
    assert card.license == ("apache-2.0",)


def test_snapshot_card_linking_outside_the_repo_is_ignored(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    outside = tmp_path / "elsewhere.md"
    outside.write_text(_card("license: mit"))
    (snap / "README.md").unlink()
    (snap / "README.md").symlink_to(outside)
    assert find_model_card(snap / "model.safetensors") is None


def test_find_card_in_a_local_model_folder(tmp_path: Path) -> None:
    model = tmp_path / "downloads" / "my-model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    (model / "README.md").write_text(_card("license: mit"))
    (model / "unet" / "weights.safetensors").write_bytes(b"x")
    assert find_model_card(model / "unet" / "weights.safetensors") == model / "README.md"
    (model / "weights.bin").write_bytes(b"x")
    assert find_model_card(model / "weights.bin") == model / "README.md"
    assert find_model_card(model) == model / "README.md"


def test_unrelated_readme_further_up_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(_card("license: mit"))  # e.g. a home folder's README
    loose = tmp_path / "downloads"
    loose.mkdir()
    (loose / "model.pt").write_bytes(b"x")
    assert find_model_card(loose / "model.pt") is None
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "model.pt").write_bytes(b"x")
    assert find_model_card(nested / "model.pt") is None


def test_fifo_card_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "README.md"
    os.mkfifo(fifo)
    (tmp_path / "model.pt").write_bytes(b"x")
    assert find_model_card(tmp_path / "model.pt") is None
    start = time.perf_counter()
    card = read_model_card(fifo)
    assert time.perf_counter() - start < FAST
    assert card.warnings == ("model card is not a regular file; ignored",)


def test_missing_card_file_warns(tmp_path: Path) -> None:
    card = read_model_card(tmp_path / "nope.md")
    assert card.license == ()
    assert card.warnings and "unreadable" in card.warnings[0]
