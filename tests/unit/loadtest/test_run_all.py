"""loadtest/run_all.py: runs benchmarks and rewrites only its own blocks of docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loadtest.run_all import SECTION_BEGIN, SECTION_END, update_page
from tests.conftest import REPO_ROOT

HAND_WRITTEN = "# Benchmarks\n\n## Matcher\n\nA verdict written by hand: the ledger costs 40%.\n"


def block(name: str, text: str) -> str:
    return f"<!-- run_all.py: begin {name} -->\n### {name}\n{text}\n<!-- run_all.py: end {name} -->\n"


def test_a_page_without_the_section_keeps_its_text_and_gets_the_section_at_the_end(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(HAND_WRITTEN)
    update_page(page, "matcher", block("matcher", "figures 1"))
    text = page.read_text()
    assert text.startswith(HAND_WRITTEN)
    assert text.index(SECTION_BEGIN) < text.index("figures 1") < text.index(SECTION_END)
    assert text.endswith(SECTION_END + "\n")


def test_a_block_is_replaced_others_are_kept_in_order_and_text_after_the_section_stays(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(HAND_WRITTEN)
    for name, text in (("zmq", "zmq 1"), ("locust", "locust 1"), ("matcher", "matcher 1")):
        update_page(page, name, block(name, text))
    page.write_text(page.read_text() + "\nA footnote written by hand.\n")
    update_page(page, "zmq", block("zmq", "zmq 2"))
    text = page.read_text()
    assert "zmq 1" not in text and text.count("<!-- run_all.py: begin zmq -->") == 1
    assert text.index("matcher 1") < text.index("zmq 2") < text.index("locust 1")  # Locust's block last
    assert text.startswith(HAND_WRITTEN) and text.endswith("\nA footnote written by hand.\n")


def test_only_one_benchmark_runs_and_its_output_lands_in_its_block(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(HAND_WRITTEN)
    run = subprocess.run([sys.executable, "loadtest/run_all.py", "--only", "journal", "--quick", "--output", str(page)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    text = page.read_text()
    assert text.startswith(HAND_WRITTEN)
    journal = text[text.index("<!-- run_all.py: begin journal -->"):text.index("<!-- run_all.py: end journal -->")]
    assert "python loadtest/bench_journal.py --seconds 0.3" in journal
    assert "exit 0" in journal and "load average" in journal
    for mode in ("always", "batch", "off"):  # the benchmark's own table, as it printed it
        assert f"\n{mode:>6}  " in journal
    assert "begin matcher" not in text


def test_an_unknown_benchmark_is_refused_and_the_page_is_untouched(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(HAND_WRITTEN)
    run = subprocess.run([sys.executable, "loadtest/run_all.py", "--only", "nosuch", "--output", str(page)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "unknown benchmark nosuch" in run.stderr and "journal" in run.stderr
    assert page.read_text() == HAND_WRITTEN
