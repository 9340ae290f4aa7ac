"""The estimate caches' code key (sim/perf/sources.py): every file an estimate runs is in it."""

import json
import subprocess
import sys
from pathlib import Path

from sim.perf.sources import ESTIMATE_ROOTS, digest, estimate_digest, import_closure

ROOT = Path(__file__).resolve().parent.parent

RUN_ESTIMATES = """
import json, sys, tempfile, os
os.environ["FOLDACCEL_BUILD_DIR"] = tempfile.mkdtemp()
from model.config import CONFIG_DIR, load_config
from sim.perf.estimate import compare_fold, estimate_gemm, estimate_layer, estimate_model
from sim.perf.sweep_points import estimate_point as evaluate
from sim.perf.energy import HOROWITZ_45NM
cfg = load_config(CONFIG_DIR / "tiny.toml")
estimate_gemm(20, 30, 40, cfg.hardware, bias=True, requant=True)
estimate_layer(cfg, segments=2)
estimate_model(cfg)
compare_fold(cfg, [1, 2])
evaluate(cfg.to_dict(), HOROWITZ_45NM.to_dict())
roots = tuple(sys.argv[1] + pkg + "/" for pkg in ("model", "hw", "sim"))
print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values())
                        if getattr(m, "__file__", None) and m.__file__.startswith(roots))))
"""


def test_closure_holds_the_modules_the_old_lists_forgot():
    files = {str(p.relative_to(ROOT)) for p in import_closure(ESTIMATE_ROOTS)}
    for rel in ("hw/deps.py", "hw/hostio.py", "hw/opcodes.py", "hw/timing.py",
                "hw/compiler.py", "hw/isa.py", "hw/uarch.py", "model/config.py",
                "model/golden.py", "hw/layer/compiler.py", "hw/layer/backend.py",
                "sim/perf/program.py", "sim/perf/sweep.py", "sim/perf/layer.py"):
        assert rel in files, rel
    assert not any(f.startswith("cocotb_tests/") for f in files)


def test_every_module_an_estimate_runs_is_in_the_closure():
    out = subprocess.run([sys.executable, "-c", RUN_ESTIMATES, str(ROOT) + "/"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True)
    ran = {str(Path(f).relative_to(ROOT)) for f in json.loads(out.stdout)}
    closure = {str(p.relative_to(ROOT)) for p in import_closure(ESTIMATE_ROOTS)}
    assert ran, out.stderr
    assert ran <= closure, sorted(ran - closure)


def test_changing_any_file_of_the_closure_changes_the_key():
    files = import_closure(ESTIMATE_ROOTS)
    base = digest(files)
    assert base == estimate_digest()
    for changed in files:
        def read(path, changed=changed):
            data = path.read_bytes()
            return data + b"\n# edited\n" if path == changed else data
        assert digest(files, read) != base, changed
