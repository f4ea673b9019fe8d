"""docs/results.md and the README's results table are generated from benchmarks/results/*.json
(benchmarks/results_doc.py): the checked-in copies must match, every result file must appear, and a hostile or
odd file must give a note, not a crash. The README itself stays a product page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_doc
from results_kit import slug

from dlopt.core.errors import EXIT_CODES

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A copy of the result files, docs/results.md and the README, to change without touching the repo."""
    results = tmp_path / "results"
    results.mkdir()
    for path in RESULTS.glob("*.json"):
        shutil.copy(path, results / path.name)
    doc, readme = tmp_path / "results.md", tmp_path / "README.md"
    shutil.copy(ROOT / "docs" / "results.md", doc)
    shutil.copy(README, readme)
    return {"results": results, "doc": doc, "readme": readme}


def _check(t: dict[str, Path]) -> tuple[int, str]:
    return results_doc.run(t["results"], t["doc"], t["readme"], check=True)


def test_checked_in_doc_and_readme_table_match_the_json() -> None:
    code, line = results_doc.run(RESULTS, ROOT / "docs" / "results.md", README, check=True)
    assert code == 0, line


def test_check_from_the_command_line() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_doc.py"), "--check"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr


def test_a_changed_figure_changes_the_output_and_check_names_the_stale_files(tree: dict[str, Path]) -> None:
    path = tree["results"] / "train-lenet5.json"
    data = json.loads(path.read_text())
    data["value"], data["met"] = 0.4321, False
    path.write_text(json.dumps(data))
    text, rows = results_doc.generate(tree["results"])
    assert "| lenet5 | digits | accuracy | 0.4321 | >= 0.97 | no |" in text
    assert ("Training every architecture with its defaults", "16 of 17 targets met") in [r[:2] for r in rows]
    code, line = _check(tree)
    assert code == 1 and "results.md" in line and "README.md" in line and "make results-doc" in line
    assert len(line.splitlines()) == 1


def test_check_names_only_the_file_that_is_stale(tree: dict[str, Path]) -> None:
    assert _check(tree)[0] == 0
    tree["doc"].write_text(tree["doc"].read_text().replace("17 of 17", "16 of 17"))
    code, line = _check(tree)
    assert code == 1 and "results.md" in line and "README.md" not in line
    results_doc.run(tree["results"], tree["doc"], tree["readme"], check=False)
    assert _check(tree)[0] == 0
    tree["readme"].write_text(tree["readme"].read_text().replace("17 of 17 targets met", "all targets met"))
    code, line = _check(tree)
    assert code == 1 and "README.md" in line and "results.md" not in line


def test_an_unknown_json_file_still_appears(tree: dict[str, Path]) -> None:
    (tree["results"] / "zz_new_bench.json").write_text(json.dumps(
        {"created": "2030-01-02T03:04:05Z", "speedup": 3.25, "threads": 1, "rows": [{"a": 1}]}))
    text, _ = results_doc.generate(tree["results"])
    other = text[text.index("## Other result files"):]
    assert "### zz_new_bench.json" in other and "| `speedup` | 3.25 |" in other
    assert "Nested fields (not shown): `rows`" in other and "2030-01-02" in other
    assert "- [Other result files](#other-result-files)" in text


def test_malformed_odd_and_oversized_files_give_a_note_not_a_crash(tree: dict[str, Path]) -> None:
    r = tree["results"]
    (r / "train-broken.json").write_text('{"name": "broken", "value": ')  # truncated, claimed by a section
    (r / "zz_list.json").write_text("[1, 2, 3]")  # valid JSON of another shape, claimed by none
    (r / "startup.json").write_text(json.dumps({"results": [1, 2], "help_over_import_torch": 0.5}))
    with open(r / "zz_huge.json", "wb") as fh:  # sparse: refused by its size before a byte is read
        fh.truncate(results_doc.MAX_BYTES + 1)
    text, _ = results_doc.generate(r)
    assert "`train-broken.json` could not be read: result file train-broken.json is not valid JSON" in text
    assert "| lenet5 | digits |" in text  # the family's other files still render
    assert "`zz_list.json` holds a list of 3 items" in text
    assert "could not be rendered as this section expects (AttributeError" in text
    assert "| `help_over_import_torch` | 0.5 |" in text
    assert re.search(r"zz_huge\.json.*\n\nCould not be read: .*more than the 16777216", text)
    assert str(r) not in text  # no absolute path of this machine leaks into the page


def test_every_section_names_its_machine_and_files() -> None:
    text = (ROOT / "docs" / "results.md").read_text()
    sections = [s for s in text.split("\n## ")[1:] if not s.startswith(("Contents", "Other result files"))]
    assert len(sections) >= 20
    for body in sections:
        title = body.splitlines()[0]
        assert "Measured on" in body, title
        assert "Written by" in body and "](../benchmarks/results/" in body, title
    for name in sorted(p.name for p in RESULTS.glob("*.json")):
        assert f"`{name}`" in text, name  # no result file silently left out


def test_readme_is_a_short_product_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "make demo" in text and "make test" in text
    assert "docs/report-screenshot.png" in text
    for pattern in (r"\b20\d\d-\d\d-\d\d\b", r"\b\d\d:\d\d UTC\b", r"\bissue \d+", r"#\d\d\b"):
        assert not re.search(pattern, text), pattern  # no lab-notebook entries or history
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (ROOT / target).exists(), target


def test_readme_results_rows_link_to_sections_that_exist() -> None:
    readme, doc = README.read_text(), (ROOT / "docs" / "results.md").read_text()
    anchors = {slug(line[3:]) for line in doc.splitlines() if line.startswith("## ")}
    links = re.findall(r"\(docs/results\.md#([^)]+)\)", readme)
    assert len(links) >= 15
    assert set(links) <= anchors, set(links) - anchors


def test_readme_exit_code_table_is_the_cli_contract() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README.read_text(), re.MULTILINE))
    assert set(map(int, rows)) == set(EXIT_CODES) | {70}


def test_a_readme_without_markers_is_refused_and_nothing_is_written(tree: dict[str, Path]) -> None:
    tree["readme"].write_text("# dlopt\n\nno table here\n")
    before = tree["doc"].read_text()
    (tree["results"] / "zz_new.json").write_text('{"x": 1}')  # the doc would change if it were written
    code, line = results_doc.run(tree["results"], tree["doc"], tree["readme"], check=False)
    assert code == 1 and "<!-- results:start -->" in line and len(line.splitlines()) == 1
    assert tree["doc"].read_text() == before and tree["readme"].read_text() == "# dlopt\n\nno table here\n"
