"""The fleet examples in `examples/`: the Kubernetes Indexed Job (validated, and its command run
here once per index), the Dask script and the Ray Data script on a 2-worker local cluster."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from bulk_store import Store, build_store, fires

from safeload import bulkmerge

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = build_store(tmp_path_factory.mktemp("example-store"))
    assert fires(s)  # the control: the canaries do fire under the real loaders
    return s


def _job(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((EXAMPLES / "k8s" / name).read_text()))
    assert len(docs) == 1
    return docs[0]  # type: ignore[no-any-return]


def _flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


def test_the_indexed_job_manifest_is_consistent() -> None:
    job = _job("convert-job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["command"] == ["safeload", "convert"]
    args = c["args"]
    assert int(_flag(args, "shard-count")) == spec["completions"] == spec["parallelism"]
    assert "--refused-ok" in args and "--shard-index" not in " ".join(args)  # the env var
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in c["volumeMounts"]} <= volumes
    for path in (_flag(args, "manifest"), _flag(args, "out") + "/x"):
        assert any(path.startswith(m + "/") for m in mounts), path
    assert not mounts["/converted"].get("readOnly") and mounts["/store"]["readOnly"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert any(env["SAFELOAD_TRUST_STORE"].startswith(m + "/") for m in mounts)
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["onExitCodes"]["containerName"] == c["name"]
    merge = _job("merge-job.yaml")
    (mc,) = merge["spec"]["template"]["spec"]["containers"]
    assert f"-of-{spec['completions']:05d}.jsonl" in mc["args"][0]


def _local(arg: str, mapping: dict[str, Path]) -> str:
    """Mount paths (at the start of a word or after `=`) to their local folders."""
    for mount, here in mapping.items():
        arg = re.sub(rf"(?<![^\s=]){re.escape(mount)}(?=/|\s|$)", str(here), arg)
    return arg


def test_the_indexed_job_command_converts_the_store_here(store: Store, tmp_path: Path) -> None:
    # What each pod runs, with the volumes mapped to local folders and JOB_COMPLETION_INDEX
    # set as Kubernetes sets it; then the merge job's command.
    job = _job("convert-job.yaml")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    out = tmp_path / "converted"
    manifest = tmp_path / "store" / "manifest.txt"
    manifest.parent.mkdir()
    manifest.write_text("\n".join(str(p) for p in [*store.benign, *store.safe, *store.hostile]))
    mapping = {"/store": manifest.parent, "/converted": out}
    args = [_local(a, mapping) for a in c["args"]]
    for i in range(job["spec"]["completions"]):
        run = subprocess.run([sys.executable, "-m", "safeload", "convert", *args],
                             env={**os.environ, "JOB_COMPLETION_INDEX": str(i)},
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr  # --refused-ok: refusals are results
        assert json.loads(run.stdout)["shard"] == i
    (mc,) = _job("merge-job.yaml")["spec"]["template"]["spec"]["containers"]
    words = shlex.split(_local(mc["args"][0], mapping))
    assert words[:2] == ["safeload", "convert"]
    words = [w for pat in words[2:] for w in (sorted(glob.glob(pat)) or [pat])]
    run = subprocess.run([sys.executable, "-m", "safeload", "convert", *words],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["counts"]["converted"] == len(store.benign)
    assert summary["counts"]["refused"] == len(store.hostile)
    assert not summary["problems"] and (out / "store.cdx.json").is_file()
    assert not store.marker.exists()


def _run_example(script: str, store: Store, out: Path) -> tuple[dict[str, Any], list[Any]]:
    run = subprocess.run([sys.executable, str(EXAMPLES / script), str(store.manifest),
                          str(out), "--workers", "2"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    merged = bulkmerge.read_results([printed["results"]])
    return bulkmerge.summarize(merged), merged.records


@pytest.mark.parametrize("script,module", [("dask_convert.py", "distributed"),
                                           ("ray_convert.py", "ray")])
def test_cluster_example_converts_the_store_and_a_rerun_converts_nothing(
        store: Store, tmp_path: Path, script: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'safeload[test]' brings it)")
    out = tmp_path / "out"
    summary, records = _run_example(script, store, out)
    assert summary["counts"] == {"converted": len(store.benign), "reused": 0, "skipped": 2,
                                 "refused": 4, "error": 0}, summary
    assert all(r["sandbox_layers"] for r in records if r["decision"] == "converted")
    assert not store.marker.exists()
    again, _ = _run_example(script, store, out)
    assert again["counts"]["converted"] == 0 and again["counts"]["reused"] == len(store.benign)
    assert again["outputs"] == summary["outputs"]
    assert not store.marker.exists()
