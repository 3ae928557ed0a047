"""The documentation site: generated reference pages, a strict mkdocs build (broken links fail), every runnable
shell block of the docs run for real, and README links that point at pages that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

RUNNABLE = re.compile(r"<!-- runnable -->\s*\n```bash\n(.*?)```", re.S)


def runnable_blocks(page: Path) -> list[str]:
    return RUNNABLE.findall(page.read_text())


def test_reference_pages_are_generated_and_the_site_builds_strictly(tmp_path: Path) -> None:
    generated = subprocess.run([sys.executable, "tools/docs_reference.py"], cwd=REPO, capture_output=True, text=True,
                               timeout=600, check=False)
    assert generated.returncode == 0, generated.stderr[-3000:]
    cli = (REPO / "docs" / "reference" / "cli.md").read_text()
    from bench.cli.app import COMMANDS

    assert all(f"## `bench {name}`" in cli for name in COMMANDS), "a command is missing from the reference"
    units = (REPO / "docs" / "reference" / "units.md").read_text()
    assert "### `kd`" in units and "`temperature`" in units
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The check itself: a page linking to a page that does not exist aborts the build."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [nothing](missing.md).\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nstrict: true\ntheme: {name: material, font: false}\n")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300, check=False, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode != 0 and "missing.md" in build.stderr


def test_readme_links_only_to_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme) if not t.startswith("http")]
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


PAGES_WITH_BLOCKS = sorted(p for p in (REPO / "docs").rglob("*.md") if runnable_blocks(p))


def test_some_pages_have_runnable_blocks() -> None:
    assert PAGES_WITH_BLOCKS, "no runnable block found: the marker is `<!-- runnable -->` before a ```bash fence"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=lambda p: str(p.relative_to(REPO / "docs")))
def test_every_runnable_block_of_a_page_runs(page: Path, tmp_path: Path) -> None:
    """The page's runnable blocks, in order, in one empty directory, with `bench` this checkout's CLI."""
    shim = tmp_path / "bin" / "bench"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m bench \"$@\"\n")
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "BENCH_CACHE": str(tmp_path / "cache"), "BENCH_RUN_DIR": str(tmp_path / "runs"), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    for number, block in enumerate(runnable_blocks(page), 1):
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                                text=True, timeout=1200, check=False)
        assert result.returncode == 0, (f"{page.name} block {number} failed ({result.returncode}):\n{block}\n"
                                        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
