"""`edgekit report` and `edgekit sweep`: the page promises figures and tables, and its numbers are the JSON's."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from edgekit.report.analysis import pareto_front
from tests.test_bad_input import _assert_clean_failure

FIGURES = {"fig-pareto", "fig-latency", "fig-throughput", "fig-stages", "fig-confusion"}
TABLES = {"variants", "stages", "per-class", "quantization", "environment"}


class _Page(HTMLParser):
    """Figures (with whether they hold an SVG), tables as lists of rows, and anything fetched from outside."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, bool] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self._figure: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.headline = ""
        self._in_headline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name):
                self.external.append(f"{tag} {name}={attributes[name]}")
        if tag == "figure":
            self._figure = attributes.get("id")
            self.figures[self._figure or ""] = False
        elif tag == "svg" and self._figure:
            self.figures[self._figure] = True
        elif tag == "table":
            self._table = attributes.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "p" and attributes.get("id") == "headline":
            self._in_headline = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "p":
            self._in_headline = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_headline:
            self.headline += data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def bench_results(
    bundle: Path, trained: dict, data_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """bench.json of the FP32 bundle and of an INT8 bundle of the same model."""
    from edgekit.pipeline.bench import BenchConfig, run_bench
    from edgekit.pipeline.compile import compile_bundle
    from edgekit.pipeline.compile_config import CompileConfig
    from edgekit.targets import get_target

    root = tmp_path_factory.mktemp("report")
    int8 = root / "int8"
    config = CompileConfig(
        trained["path"],
        get_target("x86-cpu"),
        int8,
        precision="int8",
        backend="openvino",
        val=data_dirs["val"],
        max_accuracy_drop=1.0,
        min_agreement=0.0,
    )  # the backend fixed (a default compile picks it by measurement) and the guard off: the report is the subject
    compile_bundle(config)
    results = []
    for name, path in (("fp32", bundle), ("int8", int8)):
        run_bench(BenchConfig(path, val=data_dirs["val"], iterations=8, out=root / f"bench-{name}"))
        results.append(root / f"bench-{name}" / "bench.json")
    return results


def test_report_shows_every_figure_and_table_with_the_json_numbers(
    bench_results: list[Path], run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    status, stdout, err = run_cli("report", *bench_results, "--out", out, "--json")
    assert status == 0, err
    written = json.loads(stdout)
    page = _parse(out / "report.html")
    assert set(page.figures) == FIGURES and all(page.figures.values()), page.figures
    assert set(page.tables) >= TABLES, page.tables.keys()
    assert page.external == [], "the page must not fetch anything"

    results = [json.loads(p.read_text()) for p in bench_results]
    rows = {row[0]: row for row in page.tables["variants"][1:]}
    header = page.tables["variants"][0]
    for result in results:
        name = f"{result['bundle']['precision']} · {result['bundle']['backend']}"
        row = dict(zip(header, rows[name], strict=True))
        b1 = next(r for r in result["latency"]["bundle"] if r["batch"] == 1)
        assert row["p50 ms"] == f"{b1['p50_ms']:.2f}"
        assert row["p99 ms"] == ("—" if b1["p99_ms"] is None else f"{b1['p99_ms']:.2f}")  # n too small: no p99
        assert row["n"] == str(b1["iterations"])
        bundle = result["accuracy"]["models"]["bundle"]
        low, high = bundle["top1_ci95"]
        assert row["top-1 (95 % interval)"] == f"{bundle['top1']:.2%} ({low:.1%}–{high:.1%})"
        low, high = bundle["top1_agreement_ci95"]
        agreement = f"{bundle['top1_agreement_with_reference']:.2%} ({low:.1%}–{high:.1%})"
        assert row["agreement with FP32 (95 % interval)"] == agreement
        per_class = result["accuracy"]["models"]["bundle"]["per_class_top1"]
        column = page.tables["per-class"][0].index(name)
        for class_row in page.tables["per-class"][1:]:
            assert class_row[column] == f"{per_class[class_row[0]]:.2%}"
    assert written["headline"]["variant"] in page.headline
    stages = {row[0]: row for row in page.tables["stages"][1:]}
    assert stages["int8 · openvino"][2] == f"{results[1]['stages']['network_ms']:.2f}"

    markdown = (out / "report.md").read_text()
    assert "different hosts" not in markdown and "different numbers of images" not in markdown
    md_rows = [line for line in markdown.splitlines() if line.startswith("| int8 · openvino |")]
    assert md_rows and md_rows[0].split(" | ")[1] == rows["int8 · openvino"][1]  # same p50 as the page
    assert "## Accuracy" in markdown


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(10.0, 0.90), (5.0, 0.88), (6.0, 0.85), (20.0, 0.91), (5.0, 0.88), (25.0, 0.90)]
    # (6, .85) is beaten by (5, .88); (25, .90) by (10, .90); ties are both kept.
    assert pareto_front(points) == [1, 4, 0, 3]


def test_report_refuses_mixed_models_old_schema_empty_and_unwritable(
    bench_results: list[Path], run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    status, _, err = run_cli("report", "--out", out)
    _assert_clean_failure(status, err, out, "no results given")

    other = json.loads(bench_results[1].read_text())
    other["model_id"] = "0" * 64
    other["bundle"]["source_file"] = "someone-else.pt"
    (tmp_path / "other.json").write_text(json.dumps(other))
    status, _, err = run_cli("report", bench_results[0], tmp_path / "other.json", "--out", out)
    _assert_clean_failure(status, err, out, "different model")
    assert "someone-else.pt" in err

    old = json.loads(bench_results[0].read_text())
    old["schema_version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(old))
    status, _, err = run_cli("report", tmp_path / "old.json", "--out", out)
    _assert_clean_failure(status, err, out, "schema version 1")

    other_reference = json.loads(bench_results[1].read_text())
    other_reference["reference"]["sha256"] = "f" * 64
    (tmp_path / "other-reference.json").write_text(json.dumps(other_reference))
    status, _, err = run_cli("report", bench_results[0], tmp_path / "other-reference.json", "--out", out)
    _assert_clean_failure(status, err, out, "different FP32 reference")

    batch8 = json.loads(bench_results[0].read_text())
    batch8["latency"]["bundle"] = [row for row in batch8["latency"]["bundle"] if row["batch"] != 1]
    (tmp_path / "batch8.json").write_text(json.dumps(batch8))
    status, _, err = run_cli("report", tmp_path / "batch8.json", "--out", out)
    _assert_clean_failure(status, err, out, "no batch-1 latency")

    # A record edited by hand (or by another tool) is read as types: the part that is wrong is named.
    edited = json.loads(bench_results[0].read_text())
    del edited["latency"]["reference"][0]["p50_ms"]
    edited["accuracy"]["models"]["bundle"]["top1"] = "high"
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    status, _, err = run_cli("report", tmp_path / "edited.json", "--out", out)
    _assert_clean_failure(status, err, out, "latency.reference.p50_ms is missing")

    elsewhere = json.loads(bench_results[1].read_text())
    elsewhere["environment"]["threads"] = 64
    elsewhere["accuracy"]["images"] = 3
    (tmp_path / "elsewhere.json").write_text(json.dumps(elsewhere))
    status, _, err = run_cli("report", bench_results[0], tmp_path / "elsewhere.json", "--out", tmp_path / "warned")
    assert status == 0, err
    warned = (tmp_path / "warned" / "report.md").read_text()
    assert "different hosts or thread counts" in warned and "different numbers of images" in warned

    (tmp_path / "broken.json").write_text('{"kind": "edgekit-bench", ')
    status, _, err = run_cli("report", tmp_path / "broken.json", "--out", out)
    _assert_clean_failure(status, err, out, "not a readable JSON")

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, _, err = run_cli("report", bench_results[0], "--out", blocker / "report")
    assert status == 2 and err.startswith("error: cannot write the report"), err


def test_sweep_builds_benchmarks_reports_and_rebuilds_only_new_variants(
    trained: dict, data_dirs: dict[str, Path], run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", trained["path"], "--val", data_dirs["val"], "--iterations", "3", "--out", out, "--json"]
    status, stdout, err = run_cli(*args, "--prune-ratio", "0,0.4", "--precisions", "fp32,int8")
    assert status == 0, err
    first = json.loads(stdout)
    assert sorted(first["built"]) == ["fp32-prune00", "fp32-prune40", "int8-prune00", "int8-prune40"]
    page = _parse(Path(first["report"]["html"]))
    assert len(page.tables["variants"]) == 5  # header + 4 variants
    assert "channels" in page.tables  # the pruned variants' channels before → after
    # Pruning's cost against the original model, as the pruned checkpoint recorded it (paired, with intervals).
    record = torch.load(next((out / "pruned").glob("prune40-*.pt")), weights_only=True)["pruning"]
    drop = record["accuracy"]["drop_vs_original"]
    accounting = page.tables["pruning_accuracy"]
    assert len(accounting) == 3  # header + the two 40 % variants
    for row in accounting[1:]:
        assert row[1] == str(drop["images"]) and row[-1].startswith(f"{drop['drop_pts']:+.2f} (")
    results = [json.loads(Path(p).read_text()) for p in first["results"]]
    assert len({r["model_id"] for r in results}) == 1  # pruned variants count as the same model
    # The reference is timed with every variant, in turns, in that variant's run: each speed-up is drift-free.
    assert all(r["latency"]["reference"] for r in results)
    for r in results:
        reference, bundle = r["latency"]["reference"][0], r["latency"]["bundle"][0]
        assert r["speedup_p50_vs_reference"]["1"] == pytest.approx(reference["p50_ms"] / bundle["p50_ms"])

    status, stdout, err = run_cli(*args, "--prune-ratio", "0,0.4,0.5", "--precisions", "int8")
    assert status == 0, err
    second = json.loads(stdout)
    assert second["built"] == ["int8-prune50"]
    assert sorted(second["reused"]) == ["int8-prune00", "int8-prune40"]


def test_sweep_bad_input(trained: dict, data_dirs: dict[str, Path], run_cli, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    base = ["sweep", trained["path"], "--val", data_dirs["val"], "--out", out]
    status, _, err = run_cli(*base, "--prune-ratio", "0,1.2")
    _assert_clean_failure(status, err, out, "ratios in [0, 1)")
    status, _, err = run_cli(*base, "--precisions", "fp32,int4")
    _assert_clean_failure(status, err, out, "int4")
    status, _, err = run_cli(*base, "--target", "no-such-device")
    _assert_clean_failure(status, err, out, "no-such-device")
    # A pruning mistake shared by every pruned variant stops the sweep before any build.
    status, _, err = run_cli(*base, "--prune-ratio", "0,0.3", "--recover-epochs", "2")
    _assert_clean_failure(status, err, out, "--recover-epochs needs images to recover on")


def test_report_renders_in_headless_chromium(bench_results: list[Path], run_cli, tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium")
    assert chromium is not None, "Debian's chromium is missing: `make chromium` (make test installs it)"
    out = tmp_path / "report"
    assert run_cli("report", *bench_results, "--out", out)[0] == 0
    shot = tmp_path / "shot.png"
    # No network here: Chromium's background services are turned off, as on a machine without one.
    quiet = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'ud'}",
    ]
    page = (out / "report.html").as_uri()
    subprocess.run([chromium, *quiet, f"--screenshot={shot}", "--window-size=1200,2400", page],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    dom = subprocess.run([chromium, *quiet, "--dump-dom", page], check=True, capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    # The page as the browser built it: the tables and the inline SVG plots are in its DOM.
    assert dom.count("<table") >= 2 and dom.count("<svg") >= 2, dom[:500]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # plots and tables drew something, not a blank or error page
