"""`costmodel batch` on a real Dask LocalCluster of 2 worker processes: rows equal single
analyses, a target that raises, hangs or kills its worker costs only its own row, --resume
builds no model twice, and bad input is one line and exit 2 before any work starts."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import distributed
import pytest

from costmodel.batch import COLUMNS, SCHEMA, expand
from costmodel.batch.engine import local_cluster
from costmodel.batch.rows import Output, read
from costmodel.cli import main
from costmodel.zoo import MODELS
from costmodel.zoo.guidelines import variants

MODELS_DIR = Path(__file__).parent / "models"
NETS = str((MODELS_DIR / "batch_nets.py").resolve())
TINY = str((MODELS_DIR / "tiny_net.py").resolve())
COUNT_ENV = "COSTMODEL_TEST_COUNT_FILE"

#: one test process runs this file, so that its one shared Dask cluster is the only one started
pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The file batch_nets' factories append their names to, in every worker process."""
    path = tmp_path_factory.mktemp("count") / "built.txt"
    path.touch()
    old = os.environ.get(COUNT_ENV)
    os.environ[COUNT_ENV] = str(path)  # before the workers start: they inherit it
    yield path
    if old is None:
        del os.environ[COUNT_ENV]
    else:
        os.environ[COUNT_ENV] = old


@pytest.fixture(scope="module")
def scheduler(counted: Path) -> Iterator[str]:
    """One cluster for the module, made as `costmodel batch` makes its own."""
    cluster = local_cluster(2)
    yield cluster.scheduler_address
    cluster.close()


def built(counted: Path) -> list[str]:
    return counted.read_text().split()


def batch(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["batch", *argv, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def by_target(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in rows}


def test_rows_equal_single_analyses(scheduler: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    targets = [f"{NETS}:small", f"{NETS}:wide", f"{TINY}:TinyNet",
               "costmodel.zoo.guidelines:g3_2parallel_x1"]
    out = tmp_path / "rows.jsonl"
    code, _, err = batch(capsys, *targets, "--scheduler", scheduler, "-o", str(out))
    assert code == 0, err
    rows = by_target(read(str(out)))
    assert list(rows) != [] and set(rows) == set(targets)
    for target in targets:
        assert main(["analyze", target, "--format", "json"]) == 0
        single = json.loads(capsys.readouterr().out)
        row = rows[target]
        assert row["schema"] == SCHEMA and row["status"] == "ok"
        assert {k: row[k] for k in single["totals"]} == single["totals"]
        assert row["unsupported"] == len(single["unsupported"]) == 0
        assert row["inputs"] == "; ".join("x".join(map(str, i["shape"])) + " " + i["dtype"]
                                          for i in single["inputs"])
        assert row["seconds"] >= 0 and row["error"] is None
    # hand-derived: Linear 4->3 is 4*3 Mult-Adds; 4->5->2 is 20 + 10
    assert rows[f"{NETS}:small"]["madds"] == 12 and rows[f"{NETS}:wide"]["madds"] == 30
    # a single target's family is its model's class (a pattern's: see test_patterns_expand)
    assert rows[f"{NETS}:small"]["family"] == "Linear"


def test_train_rows_carry_the_peak_of_memory(scheduler: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "train.csv"
    code, _, err = batch(capsys, f"{TINY}:TinyNet", "--train", "--scheduler", scheduler,
                         "-o", str(out))
    assert code == 0, err
    (row,) = read(str(out))
    assert main(["memory", f"{TINY}:TinyNet", "--train", "--format", "json"]) == 0
    assert row["peak_bytes"] == json.loads(capsys.readouterr().out)["peak_bytes"]
    assert main(["analyze", f"{TINY}:TinyNet", "--train", "--format", "json"]) == 0
    assert row["madds"] == json.loads(capsys.readouterr().out)["totals"]["madds"]


def test_execute_runs_what_shapes_alone_cannot(scheduler: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = f"{TINY}:DataDependent"
    for flags, status in (((), "error"), (("--execute",), "ok")):
        out = tmp_path / f"execute{len(flags)}.csv"
        assert batch(capsys, target, *flags, "--scheduler", scheduler, "-o", str(out))[0] == 0
        (row,) = read(str(out))
        assert row["status"] == status
    assert "--execute" in read(str(tmp_path / "execute0.csv"))[0]["error"]
    assert main(["analyze", target, "--execute", "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert {k: row[k] for k in totals} == totals


def test_a_failing_target_costs_only_its_own_row(scheduler: str, counted: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    names = ["small", "broken", "hangs", "exits", "killed", "wide"]
    out = tmp_path / "failures.csv"
    before = len(built(counted))
    code, _, err = batch(capsys, *(f"{NETS}:{n}" for n in names), f"{TINY}:TinyNet",
                         "--scheduler", scheduler, "--timeout", "10", "-o", str(out))
    assert code == 0, err
    rows = by_target(read(str(out)))
    status = {t.rpartition(":")[2]: r["status"] for t, r in rows.items()}
    assert status == {"small": "ok", "wide": "ok", "TinyNet": "ok", "broken": "error",
                      "hangs": "timeout", "exits": "error", "killed": "error"}
    assert "ZeroDivisionError: a factory that raises" in rows[f"{NETS}:broken"]["error"]
    assert "--timeout" in rows[f"{NETS}:hangs"]["error"]
    for name in ("exits", "killed"):
        assert "worker died" in rows[f"{NETS}:{name}"]["error"]
    assert rows[f"{NETS}:wide"]["madds"] == 30
    calls = built(counted)[before:]
    # a killer is retried at most once (only when its start was not seen), never on every worker
    assert 1 <= calls.count("exits") <= 2 and 1 <= calls.count("killed") <= 2
    # the loader builds a failing factory twice (on meta, then on the CPU): one task
    assert calls.count("hangs") == 1 and calls.count("broken") == 2
    assert "1 timeout" in err and "3 error" in err and "3 ok" in err
    # the cluster has its two workers back for whatever comes next
    with distributed.Client(scheduler, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)


def test_resume_builds_no_model_twice(scheduler: str, counted: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resume.csv"
    before = len(built(counted))
    assert batch(capsys, f"{NETS}:small", "--scheduler", scheduler, "-o", str(out))[0] == 0
    first = read(str(out))
    code, _, err = batch(capsys, f"{NETS}:small", f"{NETS}:wide", "--scheduler", scheduler,
                         "-o", str(out), "--resume")
    assert code == 0, err
    assert built(counted)[before:] == ["small", "wide"]
    rows = read(str(out))
    assert [r["target"] for r in rows] == [f"{NETS}:small", f"{NETS}:wide"]
    assert rows[0] == first[0]
    # nothing left to do: no model is built and the file stays as it was
    text = out.read_text()
    assert batch(capsys, f"{NETS}:small", f"{NETS}:wide", "--scheduler", scheduler,
                 "-o", str(out), "--resume")[0] == 0
    assert built(counted)[before:] == ["small", "wide"] and out.read_text() == text


def test_local_cluster_parquet_and_plot(counted: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Without --scheduler: a LocalCluster of its own, here written as Parquet."""
    pytest.importorskip("pyarrow")  # Parquet is optional; CSV and JSON lines are not
    out, figure = tmp_path / "rows.parquet", tmp_path / "rows.png"
    code, _, err = batch(capsys, f"{NETS}:small", f"{NETS}:wide", "--workers", "2",
                         "-o", str(out), "--plot", str(figure))
    assert code == 0, err
    rows = by_target(read(str(out)))
    assert rows[f"{NETS}:small"]["madds"] == 12 and rows[f"{NETS}:wide"]["mac"] == 63
    assert list(rows[f"{NETS}:small"]) == list(COLUMNS)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_format_reads_back_the_same_rows(tmp_path: Path) -> None:
    rows = [{"target": "a.py:m", "family": "F", "status": "ok", "inputs": "1x4 float32",
             "madds": 12, "flops": 27, "mac": 22, "mac_bytes": 88, "params": 15,
             "unsupported": 0, "seconds": 0.5},
            {"target": "b.py:m", "status": "error", "error": "b.py:m: no such file",
             "seconds": 0.01}]
    suffixes = [".csv", ".jsonl"]
    try:
        import pyarrow  # noqa: F401

        suffixes.append(".parquet")
    except ImportError:
        pass
    read_back = []
    for suffix in suffixes:
        path = tmp_path / f"rows{suffix}"
        sink = Output(str(path), suffix[1:], resume=False)
        sink.start()
        for row in rows:
            sink.write(row)
        sink.close()
        read_back.append(read(str(path)))
    assert all(r == read_back[0] for r in read_back)
    assert read_back[0][1]["madds"] is None and read_back[0][0]["madds"] == 12
    with open(tmp_path / "rows.csv", newline="") as file:
        assert next(csv.reader(file)) == list(COLUMNS)


def test_patterns_expand(tmp_path: Path) -> None:
    zoo = expand(["costmodel.zoo:*"])
    assert [t.target for t in zoo] == [f"costmodel.zoo:{n}" for n in MODELS]
    assert {t.family for t in zoo} >= {"mobilenet", "shufflenet", "resnet", "llama"}
    nets = expand(["costmodel.zoo.guidelines:*"])
    assert [t.target.rpartition(":")[2] for t in nets] == [v.name for v in variants()]
    from transformers import CONFIG_MAPPING

    assert "hf:bert" in {t.target for t in expand(["hf:ber*"])}
    assert sorted(t.target for t in expand(["hf:*"])) == sorted(f"hf:{m}"
                                                               for m in CONFIG_MAPPING)
    folder = tmp_path / "space"
    folder.mkdir()
    for name in ("b.py", "a.py", "_helper.py", "notes.txt"):
        (folder / name).write_text("")
    found = expand([str(folder)])
    assert [Path(t.target).name for t in found] == ["a.py", "b.py"]
    assert {t.family for t in found} == {"space"}
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the collection\n{folder / 'a.py'}\n\ncostmodel.zoo:resnet18\n"
                       "costmodel.zoo:resnet18\n")
    assert [t.target for t in expand([], str(listing))] == [str(folder / "a.py"),
                                                            "costmodel.zoo:resnet18"]


def test_families_of_transformers_models() -> None:
    from costmodel.batch.work import family_of
    from costmodel.capture.load import load

    families = {t: family_of(t, load(t).model) for t in ("hf:llama", "hf:bert", "hf:t5",
                                                          "hf:vit", "hf:whisper")}
    assert families == {"hf:llama": "text decoder", "hf:bert": "text encoder",
                        "hf:t5": "text encoder-decoder", "hf:vit": "vision",
                        "hf:whisper": "speech"}


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting a cluster fails the test: bad input must stop before any work."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(distributed, "LocalCluster", refuse)
    monkeypatch.setattr(distributed, "Client", refuse)


@pytest.mark.parametrize("argv, message", [
    (["nothing*"], "nothing*: unknown pattern"),
    (["costmodel.zoo:nomatch*"], "no model of costmodel.zoo matches"),
    (["no_such_package_xyz:*"], "unknown pattern: cannot import"),
    (["hf:zzz*"], "no transformers model type matches"),
    (["costmodel.zoo:resnet18", "-o", "/no/such/folder/rows.csv"], "cannot write"),
    (["costmodel.zoo:resnet18", "-o", "rows.txt"], "unknown output type"),
    (["costmodel.zoo:resnet18", "--resume"], "--resume needs -o"),
    (["costmodel.zoo:resnet18", "--timeout", "0"], "--timeout must be"),
    (["costmodel.zoo:resnet18", "--workers", "0"], "--workers must be"),
    (["costmodel.zoo:resnet18", "--plot", "/no/such/folder/a.png"], "no such folder"),
    ([], "no targets"),
])
def test_bad_input_is_one_line_before_any_work(argv: list[str], message: str, no_cluster: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = batch(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("costmodel: error: ") and message in err


def test_an_unreachable_scheduler_is_one_line_and_keeps_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.csv"
    out.write_text("kept")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, _, err = batch(capsys, "costmodel.zoo:resnet18", "--scheduler",
                             "tcp://127.0.0.1:9", "-o", str(out))
    assert code == 2 and err.count("\n") == 1
    assert "tcp://127.0.0.1:9: cannot reach the Dask scheduler" in err
    assert out.read_text() == "kept"
