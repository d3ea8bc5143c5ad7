"""`pip install .` (not editable) gives a working vadstream: the model, the schema and the entry
point travel in the wheel (issue 10, #8). Slow (a wheel build and a venv): `make test-fast` skips it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from wav_bytes import wav16k

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def repo_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and untracked, not ignored)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the repository's files")
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src, dst = REPO / name, dest / name
        if src.is_symlink() or src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                dst.symlink_to(src.readlink())
            else:
                shutil.copy2(src, dst)
    return dest


def test_wheel_built_from_the_repo_works_in_a_fresh_venv(tmp_path):
    src = repo_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("vadstream-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies (numpy, onnxruntime, pyzmq, ...) come from the test venv through a .pth line, so
    # no download is needed; the line adds a path only, so the test venv's editable vadstream is not seen.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"  # not the repository: nothing there can shadow the installed package
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import vadstream.stages.model as m; print(m.__file__); "
                            "print(m.DEFAULT_MODEL_PATH)"], cwd=work, check=True, capture_output=True, text=True)
    module, model = where.stdout.split()
    assert module.startswith(site) and model.startswith(site), where.stdout
    assert Path(model).is_file() and not Path(model).is_symlink()
    t = np.arange(16000) / 16000
    (work / "a.wav").write_bytes(wav16k((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)))
    exe = venv / "bin" / "vadstream"
    proc = subprocess.run([str(exe), "file", "a.wav"], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["duration_s"] == 1.0
    proc = subprocess.run([str(exe), "run", "--input", "a.wav", "--no-realtime", "--endpoint", f"ipc://{work}/ev"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"model {model}" in proc.stderr  # the log line naming the model in use
