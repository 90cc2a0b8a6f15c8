"""A release you could publish: ``python -m build`` makes the sdist and the wheel, ``twine check``
passes them, and the wheel, installed into a fresh virtual environment, runs ``auxopt quickstart``
with the study files it ships (no source tree in sight). The fresh environment takes auxopt's
dependencies from this one (a ``.pth`` line to its site-packages; the editable install's own hooks
are not read from there), so that the test needs no network and no second torch."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("build", reason="the build package is not installed (pip install -e '.[dev]')")
pytest.importorskip("twine", reason="twine is not installed (pip install -e '.[dev]')")
pytest.importorskip("hatchling", reason="hatchling is not installed (pip install -e '.[dev]')")


def _run(command: list, cwd: Path, timeout: int = 600) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_builds_passes_twine_and_runs_the_quickstart_in_a_fresh_environment(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT], cwd=ROOT)
    wheels, sdists = sorted(dist.glob("auxopt-*.whl")), sorted(dist.glob("auxopt-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    assert sdists[0].stat().st_size < 5_000_000  # the package, its studies and tests: no data or models
    _run([sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists], cwd=ROOT)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    fresh = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip()
    )
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (fresh / "dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheels[0]], cwd=tmp_path
    )

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([python, "-c", "import auxopt; print(auxopt.__file__)"], cwd=work).strip()
    assert where.startswith(str(fresh)), f"auxopt was imported from {where}, not from the installed wheel"
    out = _run([venv / "bin" / "auxopt", "quickstart", "--n-trials", "1", "--quiet"], cwd=work)
    assert (work / "quickstart.db").is_file()
    assert "best" in out.lower(), out
