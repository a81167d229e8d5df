"""The installed package carries the C++ library for find_package(orcd):
`python -m orcd --cmake-dir` names its CMake folder, next to the headers and
the static library, and the command line's subcommands are unaffected."""
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import orcd

PACKAGE = Path(orcd.__file__).resolve().parent
installed_from_wheel = pytest.mark.skipif(
    not (PACKAGE / "lib" / "cmake").is_dir(),
    reason=f"orcd is imported from a source tree ({PACKAGE}), not from an installed wheel that carries the C++ package")


def run_orcd(*args):
    return subprocess.run([sys.executable, "-m", "orcd", *args], capture_output=True, text=True)


@installed_from_wheel
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


@installed_from_wheel
def test_the_package_version_matches_the_module():
    version_file = Path(run_orcd("--cmake-dir").stdout.strip()) / "orcdConfigVersion.cmake"
    assert f'set(PACKAGE_VERSION "{orcd.__version__}")' in version_file.read_text()


def test_subcommands_are_still_required_without_cmake_dir():
    result = run_orcd()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr
    assert run_orcd("inspect", "--help").returncode == 0


@installed_from_wheel
def test_cmake_root_entry_point_lets_find_package_locate_orcd(tmp_path):
    """What scikit-build-core does for a project that depends on orcd: it sets
    orcd_ROOT to the folder named by the `cmake.root` entry point."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH")
    (root_ep,) = [ep for ep in entry_points(group="cmake.root") if ep.name == "orcd"]
    root = Path(root_ep.load().__file__).parent
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.24)\n"
        "project(consumer LANGUAGES CXX)\n"
        "find_package(orcd REQUIRED)\n"
        "get_target_property(include_dirs orcd::orcd INTERFACE_INCLUDE_DIRECTORIES)\n"
        'message(STATUS "orcd ${orcd_VERSION} headers: ${include_dirs}")\n')
    result = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "build"), f"-Dorcd_ROOT={root}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"orcd {orcd.__version__} headers: {root / 'include'}" in result.stdout
