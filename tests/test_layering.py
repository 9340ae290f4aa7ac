"""The layering contract model <- hw <- sim <- cocotb_tests (pyproject.toml, import-linter)."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_repository_keeps_the_layers():
    out = _lint(ROOT, ROOT / "pyproject.toml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def test_contract_catches_an_upward_import(tmp_path):
    """The same contract, on a tree whose hw imports sim, fails and names the import."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert contract["contracts"][0]["layers"] == ["cocotb_tests", "sim", "hw", "model"]
    for pkg in contract["root_packages"]:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "sim" / "tools.py").write_text("import hw.core\n")
    (tmp_path / "hw" / "core.py").write_text("import model\nimport sim.tools\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert out.returncode != 0
    assert "hw is not allowed to import sim" in out.stdout
    assert "hw.core -> sim.tools" in out.stdout


def test_production_code_launches_no_testbench():
    """No module of model/, hw/ or sim/ names a cocotb_tests module (e.g. to run it)."""
    import ast

    offenders = []
    for pkg in ("model", "hw", "sim"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and node.value.startswith("cocotb_tests.")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders
