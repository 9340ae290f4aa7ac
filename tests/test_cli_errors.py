"""Bad input, as a new user would try it: one clear message, a non-zero exit, no traceback,
and nothing half-written left behind. Every case runs the real console entry point in a
subprocess (``python -m sim.cli``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.toml")
#: A directory nobody can create files in, not even root.
UNWRITABLE = "/proc/foldaccel-cannot-exist"


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "sim.cli", *argv], capture_output=True,
                          text=True, env=full_env, cwd=cwd or REPO, timeout=timeout)


def assert_clean_error(r: subprocess.CompletedProcess, needle: str, code: int = 2) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert "error" in r.stderr


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("exp") / "w"
    r = run(["export", "--config", TINY, "--out", str(d), "--seed", "3"])
    assert r.returncode == 0, r.stderr
    return d


# ---------------------------------------------------------------- table of argument errors

def _file_under(tmp: Path) -> str:
    f = tmp / "plain-file"
    f.write_text("not a directory\n")
    return str(f / "sub" / "out")


def _huge(tmp: Path) -> str:
    f = tmp / "huge.toml"
    f.write_text('extends = "tiny.toml"\n[model]\nd_model = 4096\nffn_dim = 65536\n'
                 'n_layers = 500\n')
    return str(f)


CASES = {
    # negative seeds: argparse rejects them before any work
    "export negative seed": (lambda t: ["export", "--config", TINY, "--out", str(t / "o"),
                                        "--seed", "-1"], "negative"),
    "golden negative seed": (lambda t: ["golden", "--config", TINY, "--weights", str(t),
                                        "--seed", "-5"], "negative"),
    "rtl gemm negative seed": (lambda t: ["rtl", "gemm", "--m", "4", "--k", "4", "--n", "4",
                                          "--seed", "-2"], "negative"),
    "rtl layer negative seed": (lambda t: ["rtl", "layer", "--config", TINY, "--seed", "-1"],
                                "negative"),
    "demo negative seed": (lambda t: ["demo", "--out", str(t / "o"), "--seed", "-1"],
                           "negative"),
    # output paths that cannot be written
    "export --out under a file": (lambda t: ["export", "--config", TINY, "--out",
                                             _file_under(t)], "plain-file"),
    "export --out unwritable": (lambda t: ["export", "--config", TINY, "--out",
                                           UNWRITABLE + "/w"], "/proc"),
    "plot into a missing directory": (lambda t: ["estimate", "model", "--config", TINY,
                                                 "--compare-fold", "1,2", "--plot",
                                                 str(t / "nope" / "f.png")], "does not exist"),
    "plot into an unwritable directory": (lambda t: ["estimate", "model", "--config", TINY,
                                                     "--compare-fold", "1,2", "--plot",
                                                     "/proc/f.png"], "/proc"),
    "sweep --out unwritable": (lambda t: ["sweep", "--config", TINY, "--fold", "1,2",
                                          "--out", UNWRITABLE], "/proc"),
    "demo --out under a file": (lambda t: ["demo", "--quick", "--out", _file_under(t)],
                                "plain-file"),
    # --fold: the message says where the value came from; rtl gemm has no --fold
    "--fold from the command line": (lambda t: ["model", "info", "--config", TINY, "--fold",
                                                "3"], "command line"),
    "rtl gemm takes no --fold": (lambda t: ["rtl", "gemm", "--m", "4", "--k", "4", "--n", "4",
                                            "--fold", "3"], "unrecognized arguments"),
    # sizes the machine cannot hold: refused up front
    "absurd GEMM": (lambda t: ["estimate", "gemm", "--m", "1000000", "--k", "64", "--n",
                               "1000000"], "instructions"),
    "absurd model, estimate": (lambda t: ["estimate", "model", "--config", _huge(t)],
                               "bytes of int8 weights"),
    "absurd model, export": (lambda t: ["export", "--config", _huge(t), "--out",
                                        str(t / "o")], "bytes of int8 weights"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument(tmp_path, case):
    make_argv, needle = CASES[case]
    argv = make_argv(tmp_path)
    before = set(tmp_path.iterdir())  # after the case wrote its own input files
    r = run(argv)
    assert_clean_error(r, needle)
    assert set(tmp_path.iterdir()) == before, "a failed command left files behind"
    assert not Path(UNWRITABLE).exists()


# ---------------------------------------------------------------- configs

@pytest.mark.parametrize("text,needle", [
    ("", "d_model"),
    ("[model]\nn_heads = 4\n", "d_model"),
    ('extends = "tiny.toml"\n[model]\nd_model = 62\n', "d_model"),
    ('extends = "no-such-base.toml"\n', "no-such-base.toml"),
])
def test_incomplete_or_bad_config(tmp_path, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = run(["model", "info", "--config", str(cfg)])
    assert_clean_error(r, needle)


def test_config_extending_a_base_works(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('extends = "tiny.toml"\n[model]\nn_layers = 3\n')
    r = run(["model", "info", "--config", str(cfg), "--json"])
    assert r.returncode == 0, r.stderr
    assert '"n_layers": 3' in r.stdout


# ---------------------------------------------------------------- exports

def test_export_into_an_export_keeps_user_files(tmp_path):
    d = tmp_path / "w"
    assert run(["export", "--config", TINY, "--out", str(d)]).returncode == 0
    (d / "my-notes.txt").write_text("mine\n")
    r = run(["export", "--config", TINY, "--out", str(d), "--seed", "1"])
    assert r.returncode == 0, r.stderr
    assert (d / "my-notes.txt").read_text() == "mine\n"


def test_export_refuses_a_foreign_directory_before_quantizing(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"\xff\xd8")
    t0 = time.monotonic()
    r = run(["export", "--config", str(REPO / "configs" / "emformer_base.toml"), "--out",
             str(d)])
    assert_clean_error(r, "not an export")
    assert time.monotonic() - t0 < 30  # emformer_base quantization alone takes ~50 s
    assert sorted(p.name for p in d.iterdir()) == ["cat.jpg"]


def test_golden_uses_the_exports_config(export_dir):
    r = run(["golden", "--weights", str(export_dir), "--segments", "2", "--json"])
    assert r.returncode == 0, r.stderr
    assert '"sqnr_db"' in r.stdout


def test_corrupted_hex_image_is_detected(export_dir, tmp_path):
    d = tmp_path / "w"
    shutil.copytree(export_dir, d)
    hexfile = sorted((d / "hex").iterdir())[0]
    lines = hexfile.read_text().splitlines()
    lines[1] = "7f" if lines[1] != "7f" else "00"
    hexfile.write_text("\n".join(lines) + "\n")
    r = run(["golden", "--weights", str(d), "--segments", "1"])
    assert_clean_error(r, hexfile.name)


# ---------------------------------------------------------------- toolchain and build dir

RTL_COMMANDS = {
    "rtl gemm": ["rtl", "gemm", "--m", "4", "--k", "4", "--n", "4"],
    "rtl layer": ["rtl", "layer", "--config", TINY, "--segments", "1", "--layers", "1"],
    "bench sim-speed": ["bench", "sim-speed", "--m", "16", "--k", "16", "--n", "16"],
    "demo": ["demo", "--quick", "--no-progress"],
}


@pytest.mark.parametrize("command", list(RTL_COMMANDS))
@pytest.mark.parametrize("problem,env,needle", [
    ("missing Verilator", {"VERILATOR_ROOT": "/nonexistent/verilator"}, "VERILATOR_ROOT"),
    ("missing g++ and make", {"PATH": "/nonexistent"}, "g++"),
    ("unwritable build dir", {"FOLDACCEL_BUILD_DIR": UNWRITABLE}, "FOLDACCEL_BUILD_DIR"),
])
def test_rtl_commands_report_toolchain_problems(tmp_path, command, problem, env, needle):
    argv = RTL_COMMANDS[command]
    if command == "demo":
        argv = [*argv, "--out", str(tmp_path / "demo")]
    r = run(argv, env=env)
    assert_clean_error(r, needle)
    assert not (tmp_path / "demo" / "report.json").exists()


# ---------------------------------------------------------------- signals and pipes

def test_ctrl_c_says_interrupted_and_leaves_no_partial_output(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.Popen([sys.executable, "-m", "sim.cli", "demo", "--quick",
                          "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         # a shell runs background jobs with SIGINT ignored, and children
                         # inherit that: give the command the terminal's default
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in p.stderr:  # wait until the demo is at work: its first step is done
        if line.startswith("demo ["):
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    left = [q.name for q in out.rglob("*")] if out.exists() else []
    assert "report.json" not in left and not [n for n in left if n.endswith(".tmp")]


def test_closed_stdout_pipe_is_not_an_error():
    p = subprocess.Popen([sys.executable, "-m", "sim.cli", "model", "info", "--config", TINY],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # like `| head` exiting before the command prints
    err = p.stderr.read()
    p.wait(timeout=60)
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
