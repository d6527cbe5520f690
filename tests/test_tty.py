"""`run -it` and `exec -it`: a real terminal in the container, driven through a pty like a person would."""

from __future__ import annotations

import os
import select
import subprocess
import time

from conftest import NSBOX


def drive(nsbox, args: list[str], typed: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Run the CLI on a pty, type `typed`, collect the screen until it exits."""
    master, slave = os.openpty()
    p = subprocess.Popen(
        NSBOX + ["--root", nsbox.root, *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    screen = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
            if not sent and (b"# " in screen or b"$ " in screen):
                os.write(master, typed)
                sent = True
            if p.poll() is not None and not ready:
                break
        return p.wait(timeout=10), screen
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_run_it_gives_an_interactive_shell_with_a_terminal(nsbox):
    code, screen = drive(
        nsbox, ["run", "shell", "-it", "--rm", "--", "sh", "-i"], b"tty; echo typed-$((6*7)); exit 9\n"
    )
    assert code == 9, screen
    assert b"typed-42" in screen
    assert b"/dev/console" in screen  # isatty, and a name the container can resolve
    assert nsbox("get", "pods", "shell", check=False).returncode == 1


def test_exec_it_runs_in_a_pty_of_the_container(nsbox):
    nsbox("run", "box", "--", "sleep", "300")
    code, screen = drive(nsbox, ["exec", "-it", "box", "--", "sh", "-i"], b"tty; hostname; exit 4\n")
    assert code == 4, screen
    assert b"/dev/pts/0" in screen and b"box" in screen


def test_run_t_without_i_gives_a_terminal_with_stdin_not_attached(nsbox):
    """As `podman run -t`: stdin, stdout and stderr are the terminal; the user's typing is not relayed."""
    code, screen = drive(
        nsbox,
        ["run", "term", "-t", "--rm", "--", "sh", "-c", "tty; [ -t 0 ] && [ -t 2 ] && echo all-$((6*7)); exit 7"],
        b"",
    )
    assert code == 7, screen
    assert b"/dev/console" in screen and b"all-42" in screen
    assert nsbox("get", "pods", "term", check=False).returncode == 1
