"""The installed package carries the C++ library for find_package(orcd):
`python -m orcd --cmake-dir` names its CMake folder, next to the headers and
the static library, and the command line's subcommands are unaffected."""
import subprocess
import sys
from pathlib import Path

import orcd


def run_orcd(*args):
    return subprocess.run([sys.executable, "-m", "orcd", *args], capture_output=True, text=True)


def test_cmake_dir_names_the_package_config_inside_the_installed_package():
    result = run_orcd("--cmake-dir")
    assert result.returncode == 0, result.stderr
    cmake_dir = Path(result.stdout.strip())
    for name in ("orcdConfig.cmake", "orcdConfigVersion.cmake", "orcdTargets.cmake"):
        assert (cmake_dir / name).is_file(), name
    package = Path(orcd.__file__).resolve().parent
    assert cmake_dir == package / "lib" / "cmake" / "orcd"
    for header in ("error.h", "gguf.h", "model.h", "build.h"):
        assert (package / "include" / "orcd" / header).is_file(), header
    assert (package / "lib" / "liborcd.a").is_file()


def test_the_package_version_matches_the_module():
    version_file = Path(run_orcd("--cmake-dir").stdout.strip()) / "orcdConfigVersion.cmake"
    assert f'set(PACKAGE_VERSION "{orcd.__version__}")' in version_file.read_text()


def test_subcommands_are_still_required_without_cmake_dir():
    result = run_orcd()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr
    assert run_orcd("inspect", "--help").returncode == 0
