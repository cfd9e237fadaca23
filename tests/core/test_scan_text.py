"""`safeload scan` calls plain text "skipped", never unsafe; a broken `.safetensors` is
"malformed", exit 1 (issue 12: the pre-commit hook must not block ordinary commits, and must
stop a truncated download).
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import struct
from pathlib import Path

import pytest

from safeload._cli import main
from safeload.inspection import inspect_bytes
from safeload.scanning import scan, scan_paths

# Text that earlier versions called unsafe: each begins with bytes a pickle walk reads as
# opcodes (INST `i`, APPEND `a`, SHORT_BINBYTES `C`, ...).
TEXT_FILES = {
    "three_imports.py": "import os\nimport sys\nimport re\n\nprint(os, sys, re)\n",
    "setup.py": "import setuptools\nimport sys\n\nsetuptools.setup(name='x')\n",
    "LICENSE": "Copyright (c) 2018, Richard Zhang, Phillip Isola, Alexei A. Efros, Eli "
               "Shechtman, Oliver Wang\nAll rights reserved.\n\nRedistribution and use in "
               "source and binary forms, with or without\nmodification, are permitted.\n",
    "LICENSE.md": "GNU Lesser General Public License\n=================================\n\n"
                  "_Version 3, 29 June 2007_\n",
    "CMakeLists.txt": "cmake_minimum_required(VERSION 3.10)\nproject(demo)\n",
    "MANIFEST.in": "include LICENSE\nrecursive-include src *.py\n",
    "RECORD": "attacut/__init__.py,sha256=HPW3wrn5veJi5Ulto-bvCo,51\n"
              "attacut-1.0.6.dist-info/RECORD,,\n",
    "top_level.txt": "attacut\n",
    "build.sh": "#!/bin/sh\nset -e\nimport_data() { echo hi; }\nimport_data\n",
    "logger.py": "import os\nimport time\nimport traceback\nfrom datetime import datetime\n",
    # Fidelity run G (matplotlib, statsmodels): STRING of an unquoted line ends every load;
    # a first line `cancer,population` is no module name a text file means
    "cmr10.afm": "StartFontMetrics 2.0\nComment Creation Date: Thu Jun 21 22:23:20 1990\n"
                 "FontName CMR10\nEncodingScheme FontSpecific\nFullName CMR10\n"
                 "FamilyName Computer Modern\nItalicAngle 0.0\nIsFixedPitch false\n",
    "cancer.csv": "cancer,population\n1,445\n0,559\n3,677\n",
    "SOURCES.txt": "chgnet/__init__.py\nchgnet/model.py\nsetup.py\n",  # `c`: GLOBAL of a path
    # Review L: a PUT on an empty stack, a GET of a memo slot never written (both unpicklers
    # stop there), and later lines of a text-named file (stubs, RECORDs, LICENSE text after a
    # skipped run of bytes)
    "activation.py": 'r"""Activation dynamics for musclotendon models."""\n\nimport sympy\n',
    "speedscope.txt": "java;start_thread;Thread.run 12\njava;GC 3\n",
    "errors.pyi": "class DistutilsError(Exception): ...\nclass DistutilsModuleError("
                  "DistutilsError): ...\nclass DistutilsClassError(DistutilsError): ...\n"
                  "class DistutilsGetoptError(DistutilsError): ...\n",
    "array_utils.pxd": "cimport numpy as cnp\nctypedef fused lapack_t:\n    float\n",
    "record-c/RECORD": "certifi-2024.8.30.dist-info/INSTALLER,sha256=zuuue4knoyJ-UwPPXg8fezS7V"
                       "CrXJQrAP7zeNuwvFQg,4\ncertifi/__init__.py,sha256=p_GYZrjUwPBUhpLlCZoG"
                       "b0miKBKSqDAyZC5DvIuqbHQ,94\ncertifi/cacert.pem,,\n",
    "license-c/LICENSE": "Copyright 2014 Pallets\n\nRedistribution and use in source and "
                         "binary forms, with or without modification, are permitted provided "
                         "that the following conditions are met:\n",
    "LICENSE.BSD": "Copyright (c) Individual contributors.\nAll rights reserved.\n\n"
                   "Redistribution and use in source and binary forms, with or without\n"
                   "modification, are permitted provided that the following conditions are "
                   "met:\n",
    "distutils-precedence.pth": "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; "
                                "enabled = os.environ.get(var, 'local') == 'local'",
    "mm.py.jinja": "import functools\nimport torch\n{% if x %}\n",
    # Review V: one top-level word read as an import (`ertifi`, `ython`, INST `sympy`), a
    # RECORD whose version has an identifier part (`.post1`), prose with an `R` in a LICENSE
    "record-post/RECORD": "certifi-2026.10.19.post1.dist-info/INSTALLER,sha256=zuuue4knoyJ-"
                          "UwPPXg8fezS7VCrXJQrAP7zeNuwvFQg,4\r\ncertifi/__init__.py,sha256=p_"
                          "GYZrjUwPBUhpLlCZoGb0miKBKSqDAyZC5DvIuqbHQ,94\r\n",
    "tl-c/top_level.txt": "certifi\n",
    "tl-i/top_level.txt": "isympy\nsympy\n",
    "requirements.txt": "cython\nnumpy\n",
    "requirements-dev.txt": "click\n",
    "cpplint/LICENSE": "cpplint.py and its corresponding unit tests are Copyright (C) 2009 "
                       "Google Inc.\n\nRedistribution and use in source and binary forms, "
                       "with or without modification, are permitted provided that the "
                       "following conditions are met:\n",
    "ns/namespace_packages.txt": "cli\n",
}


@pytest.mark.parametrize("name", sorted(TEXT_FILES))
def test_common_text_files_are_skipped(name: str, tmp_path: Path) -> None:
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(TEXT_FILES[name])
    assert scan(tmp_path / name).status == "skipped"


@pytest.mark.parametrize("package", ["omegaconf", "yaml", "pygments"])
def test_the_source_tree_of_a_real_package_has_nothing_unsafe(package: str) -> None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    reports, errors = scan_paths(list(spec.submodule_search_locations))
    assert not errors
    bad = [(r.path, r.findings[:1]) for r in reports if r.status not in ("skipped", "clean")]
    assert not bad, bad
    assert len(reports) > 10


def test_a_file_named_as_text_may_begin_like_an_import_of_a_name_with_spaces() -> None:
    # `i` INST of `mport os`: text by its name (train.py), not a checkpoint
    text = b"import os\nimport sys\nimport re\n"
    assert inspect_bytes(text, text_ok=True).verdict == "skipped"
    # Review F (issue 9): the same bytes under a name a loader is given are the import of
    # `mport os`, which `mport os.py` beside the file would satisfy (`evil mod.py`)
    assert inspect_bytes(text).verdict == "unsafe"


@pytest.mark.parametrize("arg", [b"S'quoted'", b"I12", b"I012", b"L12L", b"F1.5", b"p0\ng0",
                                 b"p0"])
def test_an_import_after_a_text_argument_every_unpickler_accepts_is_found(arg: bytes) -> None:
    # the walk stops only at an argument every unpickler refuses (an unquoted STRING, ...)
    assert inspect_bytes(b"N" + arg + b"\ncos\nsystem\n").verdict == "unsafe"


def test_a_payload_after_a_scalar_prefix_is_still_unsafe() -> None:
    # the scalar-then-text rule must not hide a second pickle that imports
    payload = pickle.dumps(b"x", protocol=0) + pickle.dumps(print, protocol=0)
    assert inspect_bytes(payload).verdict == "unsafe"


def test_an_underflow_ends_the_walk_but_an_import_before_it_is_found() -> None:
    assert inspect_bytes(b"attacut\n").verdict == "skipped"   # APPEND on an empty stack
    # GLOBAL comes first: the import happens before any underflow
    assert inspect_bytes(b"cos\nsystem\na.").verdict == "unsafe"


def _safetensors(header: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header


BROKEN_SAFETENSORS = {
    "length-0": _safetensors(b"", 0),
    "past-the-end": _safetensors(b"{}", 1 << 16),
    "2^63": _safetensors(b"{}", 1 << 63),
    "not-json": _safetensors(b"abcd"),
    "json-list": _safetensors(b"[]"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_SAFETENSORS))
def test_a_broken_safetensors_file_is_malformed_exit_1(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(BROKEN_SAFETENSORS[kind])
    assert main(["scan", str(path), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    (report,) = doc["files"]
    assert report["status"] == "malformed" and doc["summary"]["malformed"] == 1
    assert "not a valid safetensors file" in report["findings"][0]["message"]
    # the same bytes under another name are no model file: skipped
    other = tmp_path / "notes.dat"
    other.write_bytes(BROKEN_SAFETENSORS[kind])
    assert scan(other).status == "skipped"


@pytest.mark.parametrize("blob", [b"Ng1\ncevil_mod_x\nf\n", b"Nq\x00h\x01cevil_mod_x\nf\n",
                                  b"r\x00\x00\x00\x00cevil_mod_x\nf\n", b"(\x94cevil_mod_x\nf\n"])
def test_a_load_ends_where_both_unpicklers_fail_on_the_memo(blob: bytes) -> None:
    # Review L: a GET of an index never written, a PUT or MEMOIZE with nothing to store: both
    # unpicklers raise there, so the import after it is never reached (checked here by each
    # of them: a reached import would be ModuleNotFoundError).
    for loads in (pickle.loads, pickle._loads):  # type: ignore[attr-defined]
        with pytest.raises(Exception) as info:
            loads(blob)
        assert not isinstance(info.value, ImportError), loads
    assert inspect_bytes(blob).verdict == "skipped"


def test_a_memo_slot_written_before_is_read_on_to_the_import() -> None:
    for blob in (b"Np0\ng0\ncos\nsystem\n", b"Nq\x01h\x01cos\nsystem\n",
                 b"N\x94h\x00cos\nsystem\n", b"N.Ng5\ncos\nsystem\n"):  # (after STOP: not known)
        assert inspect_bytes(blob).verdict == "unsafe", blob


@pytest.mark.parametrize("name", ["notes.txt", "LICENSE", "RECORD", "stub.pyi"])
def test_a_text_named_file_still_reaches_a_real_import_or_a_call(name: str) -> None:
    # The text excuse covers lines whose top module is no identifier, anywhere; a later line
    # naming an identifier module, or a call of an excused import, is still an import.
    later = b"class A(B): ...\nclass C(D): ...\ncos\nsystem\n"
    called = b"class A(B): ...\nclass C(D): ...\n(S'x'\ntR."
    inst = b"class A(B): ...\nx\n(S'x'\nios/x\ny\n."  # INST with a MARK calls what it imports
    assert inspect_bytes(later, text_ok=True).verdict == "unsafe"
    assert inspect_bytes(called, text_ok=True).verdict == "unsafe"
    assert inspect_bytes(inst, text_ok=True).verdict == "unsafe"


def test_compressed_text_is_judged_by_its_inner_name(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "carshare.csv.gz"
    path.write_bytes(gzip.compress(b"centroid_lat,centroid_lon,car_hours,peak_hour\n1,2,3,4\n"))
    assert scan(path).status == "skipped"
    payload = tmp_path / "model.pt.gz"  # no text name: the same bytes are an import
    payload.write_bytes(gzip.compress(b"centroid_lat,centroid_lon\nx\n"))
    assert scan(payload).status == "unsafe"


def test_the_dist_info_of_every_installed_distribution_is_skipped_or_clean() -> None:
    # review V: 8 files of this venv's .dist-info folders were "unsafe"
    import site

    folders = [str(d) for sp in site.getsitepackages() for d in Path(sp).glob("*.dist-info")]
    reports, errors = scan_paths(folders)
    assert not errors and len(reports) > 50
    bad = [(r.path, r.findings[:1]) for r in reports if r.status not in ("skipped", "clean")]
    assert not bad, bad

