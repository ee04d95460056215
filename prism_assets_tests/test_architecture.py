"""The layout's rules, enforced: lint clean, the pure core free of Dagster (import-linter), no import cycles, and
the SQL checks inside the wheel a deployment installs."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp

from prism_assets.defs.sql_checks import check_files, load_sql_checks

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)


def test_ruff_is_clean():
    result = run(str(BIN / "ruff"), "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold():
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dagster" in (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]")[1]


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("prism_assets")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert not cycles, f"modules that import each other (directly or through others): {cycles}"


def test_the_wheel_ships_every_sql_check_and_an_installed_copy_loads_them_all(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    built = run(str(BIN / "python"), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                str(wheel_dir), ".")
    assert built.returncode == 0, built.stderr
    [wheel] = wheel_dir.glob("prism_assets-*.whl")
    shipped = sorted(name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".sql"))
    assert len(shipped) == len(check_files()) >= 30
    installed = run(str(BIN / "python"), "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel))
    assert installed.returncode == 0, installed.stderr
    count = run(str(BIN / "python"), "-c", "import prism_assets, sys; from prism_assets.defs.sql_checks import "
                "load_sql_checks; assert prism_assets.__file__.startswith(sys.argv[1]); print(len(load_sql_checks()))",
                str(site), cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert count.returncode == 0, count.stderr
    assert int(count.stdout) == len(load_sql_checks())
