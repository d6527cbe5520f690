"""The example manifests do what their headers say; `nsbox demo` passes and cleans up; the Vagrant box is valid.

Each example is applied in a private root (the `nsbox` fixture) and observed
from outside: namespace inodes through /proc, `ipcs` on the host, the
containers' logs. `nsbox demo` is run as a user runs it, and must leave
nothing behind, also when interrupted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest
from conftest import NSBOX, leftovers, ns_inode, root_cgroups, wait_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_NAMES = ("localhost", "ipc", "volume", "privileged", "lifecycle", "two-pods")
CONNECT = 'import os, socket; print(os.strerror(socket.socket().connect_ex(("127.0.0.1", 8080))))'
IDLE = ["sh", "-c", 'trap "exit 0" TERM; sleep infinity & wait']


def example(name: str) -> str:
    """The manifest as the installed package ships it (what `nsbox demo` uses)."""
    return str(resources.files("nsbox") / "examples" / f"{name}.yaml")


def apply(nsbox, name: str) -> None:
    p = nsbox("apply", "-f", example(name))
    assert "warning" not in p.stderr, p.stderr


def logs_with(nsbox, pod: str, container: str, text: str, timeout: float = 20) -> str:
    def look() -> str | None:
        out = nsbox("logs", pod, "-c", container, check=False).stdout
        return out if text in out else None

    return wait_for(look, timeout=timeout, what=f'"{text}" in the log of {pod}/{container}')


def host_ipcs() -> str:
    return subprocess.run(["ipcs", "-m", "-s"], capture_output=True, text=True).stdout


def other_pod(nsbox) -> None:
    nsbox("run", "other", "--", *IDLE)
    nsbox("wait", "pod/other", "--for=condition=Ready")


# ---------------------------------------------------------------- the files


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_a_valid_manifest_with_a_header_and_no_warnings(name):
    from nsbox import manifest

    text = Path(example(name)).read_text()
    assert text.startswith(f"# {name}.yaml - "), "a one-line summary first"
    header = text.split("\napiVersion:")[0]
    assert "What it shows" in header and "nsbox apply -f examples/" in header
    pods, warnings = manifest.pods_from_documents(manifest.load_documents(example(name)))
    assert pods and warnings == []
    for pod in pods:
        for c in pod.all_containers():
            assert c.argv[0] in ("sh", "python3", "sleep"), "stock tools only"


def test_the_repository_examples_are_the_packaged_ones():
    if not (REPO / "examples").exists():
        pytest.skip("not a source checkout")
    for name in EXAMPLE_NAMES:
        assert (REPO / "examples" / f"{name}.yaml").read_bytes() == Path(example(name)).read_bytes()


# ---------------------------------------------------------------- each example does what it says


def test_localhost_example_server_and_client_talk_over_loopback_unreachable_from_another_pod(nsbox):
    apply(nsbox, "localhost")
    logs_with(nsbox, "localhost-demo", "client", "server said: hello client, this is the server")
    logs_with(nsbox, "localhost-demo", "server", "answered client at 127.0.0.1")
    server, client = nsbox.pid("localhost-demo", "server"), nsbox.pid("localhost-demo", "client")
    assert ns_inode(server, "net") == ns_inode(client, "net") != ns_inode(os.getpid(), "net")
    other_pod(nsbox)
    assert nsbox("exec", "localhost-demo", "-c", "client", "--", "python3", "-c", CONNECT).stdout.strip() == "Success"
    assert nsbox("exec", "other", "--", "python3", "-c", CONNECT).stdout.strip() == "Connection refused"


def test_ipc_example_passes_messages_through_sysv_ipc_and_dev_shm_invisible_elsewhere(nsbox):
    apply(nsbox, "ipc")
    consumer = logs_with(nsbox, "ipc-demo", "consumer", "received 5/5 messages")
    for i in range(1, 6):
        assert f"received 'message {i}/5 from pid 1 on host ipc-demo'" in consumer
    logs_with(nsbox, "ipc-demo", "producer", "the consumer wrote on /dev/shm/nsbox-demo: ack: received 5/5")
    key = "0x6e736278"
    for c in ("producer", "consumer"):
        out = nsbox("exec", "ipc-demo", "-c", c, "--", "ipcs", "-m", "-s").stdout
        assert out.count(key) == 2, out  # the segment and the semaphore set
    p, c = nsbox.pid("ipc-demo", "producer"), nsbox.pid("ipc-demo", "consumer")
    assert ns_inode(p, "ipc") == ns_inode(c, "ipc") != ns_inode(os.getpid(), "ipc")
    other_pod(nsbox)
    assert key not in nsbox("exec", "other", "--", "ipcs", "-m", "-s").stdout
    assert nsbox("exec", "other", "--", "ls", "/dev/shm").stdout.strip() == ""
    assert key not in host_ipcs()


def test_volume_example_serves_what_the_puller_wrote_over_localhost(nsbox):
    apply(nsbox, "volume")
    logs_with(nsbox, "volume-demo", "reader", "GET /now.txt -> 200: update")
    get = 'import urllib.request as u; print(u.urlopen("http://127.0.0.1:8080/os-release.txt").read().decode())'
    served = nsbox("exec", "volume-demo", "-c", "reader", "--", "python3", "-c", get).stdout
    assert served.strip() == Path("/etc/os-release").read_text().strip()
    refused = nsbox("exec", "volume-demo", "-c", "server", "--", "touch", "/srv/www/x", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    nsbox("exec", "volume-demo", "-c", "puller", "--", "touch", "/pull/x")


def test_privileged_example_allows_in_one_container_what_it_refuses_in_the_other(nsbox):
    apply(nsbox, "privileged")
    admin = logs_with(nsbox, "privileged-demo", "admin", "mount -t tmpfs")
    app = logs_with(nsbox, "privileged-demo", "app", "mount -t tmpfs")
    assert "admin: ALLOWED: ip link add admin-a type veth" in admin
    assert "admin: ALLOWED: mount -t tmpfs demo /mnt" in admin
    assert "app: REFUSED: ip link add app-a type veth" in app and "Operation not permitted" in app
    assert "app: REFUSED: mount -t tmpfs demo /mnt" in app
    links = nsbox("exec", "privileged-demo", "-c", "app", "--", "ip", "-brief", "link").stdout
    assert "admin-a" in links and "app-a" not in links  # one network namespace for the pod
    assert "admin-a" not in subprocess.run(["ip", "-brief", "link"], capture_output=True, text=True).stdout


def test_lifecycle_example_runs_prestop_then_sigterm_and_kills_the_stubborn_container_at_the_grace_period(nsbox):
    apply(nsbox, "lifecycle")
    logs_with(nsbox, "lifecycle-demo", "app", "app: running")
    nsbox.pid("lifecycle-demo", "stubborn")
    follow = nsbox.popen("logs", "-f", "lifecycle-demo", "-c", "app")
    time.sleep(0.3)
    t0 = time.monotonic()
    nsbox("delete", "pod", "lifecycle-demo")
    took = time.monotonic() - t0
    out, _ = follow.communicate(timeout=10)
    lines = [line for line in out.splitlines() if not line.startswith("app: running")]
    assert lines == ["preStop: draining for 2 s", "preStop: done", "app: got SIGTERM, saving state and exiting"]
    # SIGKILL at the 5 s grace period: not earlier, and not at the default 30 s
    # (the upper bound leaves room for slow machines: ~5.2 s here, 20 s in a busy qemu VM).
    assert 4.5 <= took < 25, f"delete took {took:.1f}s: the stubborn container should die at the 5 s grace period"


def test_two_pods_example_same_port_same_ipc_key_and_shm_name_in_both_pods(nsbox):
    apply(nsbox, "two-pods")
    for me in ("blue", "green"):
        log = logs_with(nsbox, me, me, "localhost:8080 says")
        assert f"{me}: hostname {me}; localhost:8080 says {me}; SysV segment says {me}; /dev/shm/owner says {me}" in log
    assert ns_inode(nsbox.pid("blue"), "ipc") != ns_inode(nsbox.pid("green"), "ipc")
    assert "0x6e736279" not in host_ipcs()
    out = nsbox("delete", "-f", example("two-pods"), "--grace-period", "0").stdout
    assert out.splitlines() == ['pod "blue" deleted', 'pod "green" deleted']


# ---------------------------------------------------------------- nsbox demo


def demo_root(output: str) -> str:
    m = re.search(r"--root (/tmp/nsbox-demo-\S+?):", output)
    assert m, f"the demo names its private root:\n{output}"
    return m.group(1)


def assert_nothing_left(root: str) -> None:
    assert not os.path.exists(root), f"{root} was not removed"
    assert not leftovers(root) and not root_cgroups(root)


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_demo_all_passes_every_demo_and_leaves_nothing_behind(root_only):
    p = subprocess.run(NSBOX + ["demo", "all"], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in ("localhost", "ipc", "volume"):
        assert re.search(rf"^  PASS  {name}$", p.stdout, re.M), p.stdout
    assert "[FAIL]" not in p.stdout
    assert "$ nsbox apply -f " in p.stdout  # the commands a person would type
    assert "HTTP 200 OK" in p.stdout and "Connection refused" in p.stdout
    assert_nothing_left(demo_root(p.stdout))


def test_demo_interrupted_by_ctrl_c_deletes_its_pods_and_its_root(root_only):
    demo = subprocess.Popen(
        NSBOX + ["demo", "localhost"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    seen = ""
    try:
        for line in demo.stdout:  # until both pods run
            seen += line
            if line.startswith("$ nsbox inspect"):
                break
        root = demo_root(seen)
        assert os.listdir(os.path.join(root, "pods"))
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, seen + out + err
    assert "interrupted" in err
    assert_nothing_left(root)


def test_demo_with_an_unknown_name_is_a_usage_error():
    p = subprocess.run(NSBOX + ["demo", "nope"], capture_output=True, text=True)
    assert p.returncode == 2


# ---------------------------------------------------------------- the Vagrant box


def test_vagrantfile_is_valid(tmp_path):
    if not shutil.which("vagrant"):
        pytest.skip("vagrant is not installed (apt-get install vagrant): Vagrantfile not validated")
    env = dict(
        os.environ,
        VAGRANT_HOME=str(tmp_path / "home"),
        VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"),
        VAGRANT_CHECKPOINT_DISABLE="1",
    )
    p = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=REPO / "vagrant",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_vagrantfile_asks_for_the_documented_machine():
    text = (REPO / "vagrant" / "Vagrantfile").read_text()
    assert '"debian/bookworm64"' in text
    for provider in ("virtualbox", "libvirt"):
        block = text.split(f'config.vm.provider "{provider}"')[1].split("end")[0]
        assert re.search(r"\.cpus = 2\b", block) and re.search(r"\.memory = 2048\b", block)
    assert 'synced_folder "..", "/vagrant"' in text
    assert 'path: "provision.sh"' in text


def fake_repo(tmp_path: Path, exit_code: int) -> Path:
    """A copy of provision.sh in a repository whose setup.sh only records how it was called."""
    repo = tmp_path / "repo"
    (repo / "vagrant").mkdir(parents=True)
    shutil.copy(REPO / "vagrant" / "provision.sh", repo / "vagrant" / "provision.sh")
    (repo / "setup.sh").write_text(f'#!/bin/sh\necho "$(pwd -P) $0 $*" >"{tmp_path}/called"\nexit {exit_code}\n')
    (repo / "setup.sh").chmod(0o755)
    return repo


def test_provision_script_runs_setup_demo_of_the_repository_it_is_in(tmp_path, root_only):
    repo = fake_repo(tmp_path, 0)
    p = subprocess.run([str(repo / "vagrant" / "provision.sh")], capture_output=True, text=True, cwd="/")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "called").read_text().split()[1:] == [f"{repo}/setup.sh", "demo"]
    assert "cgroups" in p.stdout and "setup.sh test" in p.stdout


def test_provision_script_uploaded_elsewhere_takes_the_repository_as_argument(tmp_path, root_only):
    repo = fake_repo(tmp_path, 0)
    copy = tmp_path / "vagrant-shell"  # where Vagrant uploads it
    shutil.copy(repo / "vagrant" / "provision.sh", copy)
    assert subprocess.run([str(copy)], capture_output=True, cwd="/").returncode == 1
    assert subprocess.run([str(copy), str(repo)], capture_output=True, cwd="/").returncode == 0
    assert (tmp_path / "called").read_text().split()[1:] == [f"{repo}/setup.sh", "demo"]


def test_provision_script_fails_when_the_demo_fails(tmp_path, root_only):
    repo = fake_repo(tmp_path, 3)
    p = subprocess.run([str(repo / "vagrant" / "provision.sh")], capture_output=True, text=True, cwd="/")
    assert p.returncode == 3 and "setup.sh demo' failed" in p.stderr
