"""The CLI as a program: every module and command loads, and the fast paths stay lean.

The CLI imports per command, so a module that breaks at import time (a name
used at run time but imported only for type checkers, say) fails only the
command that loads it. These tests load each one in a fresh interpreter.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
from conftest import NSBOX, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(REPO, "nsbox", "*.py"))
    if not p.endswith(("__main__.py", "_native_build.py"))
)
COMMANDS = [
    "apply",
    "pod",
    "create",
    "run",
    "exec",
    "logs",
    "get",
    "describe",
    "inspect",
    "delete",
    "wait",
    "top",
    "doctor",
    "gc",
    "demo",
    "version",
]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_on_its_own(module):
    p = _python(f"import nsbox.{module}")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_its_help(command):
    p = subprocess.run(NSBOX + [command, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: nsbox {command}")


def test_help_is_wrapped_to_the_terminal_width():
    def help_lines(columns: str) -> list[str]:
        p = subprocess.run(
            NSBOX + ["run", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": columns},
        )
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    narrow, wide = help_lines("50"), help_lines("200")
    assert len(narrow) > len(wide)
    assert sum(len(line) > 50 for line in narrow) <= 2  # only unbreakable words stick out
    assert max(len(line) for line in wide) > 50


def test_doctor_finds_nothing_missing_on_this_machine(nsbox):
    p = nsbox("doctor")
    assert "missing" not in p.stdout.lower(), p.stdout


def _imported_by(root: str, *args: str) -> set[str]:
    """The modules loaded by running one command in a fresh interpreter (no server)."""
    code = (
        "import json, sys\n"
        "from nsbox import cli\n"
        "code = cli.run(['--root', sys.argv[1], *sys.argv[2:]])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, root, *args], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["code"] == 0
    return set(out["modules"])


def test_reading_and_deleting_commands_import_neither_typing_nor_the_heavy_packages(nsbox):
    """`get pods` and `delete` are the commands people repeat; what they load is start-up time.
    A quiet pod's delete runs the watcher's teardown in the CLI (docs/design.md §3): that, and
    the shutil it removes trees with, is all it adds."""
    nsbox("pod", "create", "lean")
    watcher = nsbox.inspect("lean")["watcher"]["pid"]
    wait_for(lambda: os.path.basename(os.readlink(f"/proc/{watcher}/exe")) == "nsbox-idle", timeout=20)
    heavy = {"typing", "yaml", "pyroute2", "shutil", "dataclasses", "nsbox.watcher", "nsbox.manifest", "platform"}
    loaded = _imported_by(nsbox.root, "get", "pods")
    assert not heavy & loaded, f"imported by get pods: {heavy & loaded}"
    loaded = _imported_by(nsbox.root, "delete", "pod", "lean")
    heavy -= {"shutil", "nsbox.watcher"}
    assert not heavy & loaded, f"imported by delete: {heavy & loaded}"


def test_version_imports_only_the_parser(nsbox):
    """`nsbox version` is the start-up floor the bench reports: the parser, the name check and
    nothing of pods, sockets or platform (docs/design.md §6)."""
    code = (
        "import sys\n"
        "from nsbox import cli\n"
        "code = cli.run(['--root', sys.argv[1], 'version'])\n"
        "print(code, ' '.join(sorted(sys.modules)))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, nsbox.root], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    code, modules = p.stdout.splitlines()[-1].split(" ", 1)
    assert code == "0"
    loaded = set(modules.split())
    for heavy in ("platform", "calendar", "datetime", "nsbox.pods", "nsbox.native", "socket", "typing"):
        assert heavy not in loaded, f"{heavy} is imported by version"


def test_output_that_cannot_be_written_is_one_error_line_and_exit_1(nsbox):
    nsbox("pod", "create", "full")
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            NSBOX + ["--root", nsbox.root, "get", "pods"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert p.returncode == 1
    assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr, p.stderr


def test_a_reader_that_goes_away_is_not_an_error(nsbox):
    for i in range(3):
        nsbox("pod", "create", f"pipe{i}")
    p = subprocess.run(
        f"{' '.join(NSBOX)} --root {nsbox.root} get pods | true; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.stdout.strip() == "0"
    assert "Traceback" not in p.stderr and "error" not in p.stderr, p.stderr


LAUNCHER = os.path.join(os.path.dirname(sys.executable), "nsbox")


def _lean_launcher() -> bool:
    try:
        with open(LAUNCHER) as f:
            return f.readline().rstrip().endswith(" -IS")
    except OSError:
        return False


@pytest.mark.skipif(not _lean_launcher(), reason="not a setup.sh install (pip's console script)")
def test_the_setup_sh_command_starts_lean_and_ignores_the_callers_python_environment(nsbox, tmp_path):
    """setup.sh's `nsbox` runs CPython with -I -S: the same results as `python -m nsbox`, without
    `site`, and a PYTHONPATH (here one whose `nsbox` package would fail) is not looked at."""
    decoy = tmp_path / "nsbox"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONSTARTUP=str(decoy / "__init__.py"))
    nsbox("pod", "create", "launched")
    for args in (["version"], ["get", "pods", "-o", "name"]):  # (the table's AGE may tick between two runs)
        p = subprocess.run(
            [LAUNCHER, "--root", nsbox.root, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
        )
        assert p.returncode == 0 and not p.stderr, p.stderr
        assert p.stdout == nsbox(*args).stdout
    # what its #! line runs, with -X importtime: nsbox.cli is imported, site never
    with open(LAUNCHER) as f:
        interpreter, flags = f.readline()[2:].split()
    p = subprocess.run(
        [interpreter, flags, "-X", "importtime", LAUNCHER, "--root", nsbox.root, "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=dict(os.environ, NSBOX_SERVER="0"),  # what this process imports, not a server's fork
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()}
    assert "nsbox.cli" in imported and "site" not in imported
