"""Commands about the machine and nsbox itself: `doctor`, `gc`, `demo`, `version`, `server`."""

from __future__ import annotations

import os
import sys

from nsbox.cli import command, runtime

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    import argparse


@command("doctor", "check that this machine can run nsbox")
def cmd_doctor(args: argparse.Namespace) -> int:
    from nsbox import doctor

    return doctor.run(args.root)


def gc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="also remove the pod network bridges no pod uses")


@command("gc", "reclaim what crashed pods left behind", gc_arguments)
def cmd_gc(args: argparse.Namespace) -> int:
    for line in runtime(args).gc(idle_bridges=args.all):
        print(line)
    return 0


def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", nargs="?", default="all", choices=["localhost", "ipc", "volume", "all"])


@command("demo", "show what a pod is, with real tools", demo_arguments)
def cmd_demo(args: argparse.Namespace) -> int:
    from nsbox import demo

    return demo.run(args.which)


@command("version", "print versions")
def cmd_version(args: argparse.Namespace) -> int:
    from nsbox import __version__

    # what platform.python_version() and platform.release() say, without importing platform (3 ms)
    print(f"nsbox {__version__}")
    print(f"python {sys.version.split()[0]}")
    print(f"kernel {os.uname().release}")
    return 0


def server_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["start", "stop", "status"])


@command("server", "start, stop or show the optional warm command server", server_arguments)
def cmd_server(args: argparse.Namespace) -> int:
    from nsbox import server

    print(server.control(args.action))
    return 0
