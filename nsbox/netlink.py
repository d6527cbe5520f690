"""The few rtnetlink requests nsbox's bridge network needs, built with the standard library.

A bridge pod needs a handful of fixed messages: a veth pair with one end in
the pod's netns, that end's index, the host end onto the bridge, an IPv4
address, links up, a default route; on teardown, deleting a link. The first
pod on a bridge also checks what is there (links, addresses, routes: three
dumps) and makes the bridge. SPEC §1 names pyroute2 for this; nsbox does not
use it: its import alone costs 0.3-0.5 s and 33 MB (FACTS.md), more than the
whole rest of a pod's start, and the API it offers for reading attributes
changed between Debian's package and PyPI's (the bridge path broke on
Debian's). The messages themselves are fixed and small (linux/rtnetlink.h).

A socket answers in the network namespace it was created in, whatever
namespace its owner moves to later: open one per namespace.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

TYPE_CHECKING = False          # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Iterator

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>, <linux/if_addr.h>
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 22, 24, 26
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
NLA_F_NESTED = 1 << 15
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_NLMSGHDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")        # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")         # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")         # family, dst_len, src_len, tos, table, protocol, scope, type, flags


def attr(kind: int, value: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))       # without NLA_F_NESTED, as iproute2 sends them


def ifname(name: str) -> bytes:
    return attr(IFLA_IFNAME, name.encode() + b"\0")


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def attrs(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of the rtattrs in data[offset:]."""
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & ~NLA_F_NESTED, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


class Rtnl:
    """A NETLINK_ROUTE socket in the caller's current network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags,
                                      self.seq, 0) + body)
        return self.seq

    def _answers(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, payload) of the kernel's messages answering request `seq`; a refusal raises
        OSError with the kernel's errno (an NLMSG_ERROR of 0 is an acknowledgement)."""
        while True:
            data = self.sock.recv(1 << 17)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                payload = data[offset + _NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if rseq != seq:
                    continue                           # an answer to an earlier, abandoned request
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                yield kind, payload

    def request(self, kind: int, flags: int, body: bytes) -> bytes:
        """One request: the reply message's payload, or b"" for a plain acknowledgement."""
        rkind, payload = next(self._answers(self._send(kind, flags, body)))
        return b"" if rkind == NLMSG_ERROR else payload

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        """The payloads of every message answering a dump request (RTM_GET* of all objects)."""
        out = []
        answers = self._answers(self._send(kind, NLM_F_DUMP, body))
        while (answer := next(answers))[0] != NLMSG_DONE:
            out.append(answer[1])
        return out

    # ------------------------------------------------------------ links

    def link(self, name: str) -> tuple[int, str] | None:
        """(index, kind) of interface `name` ("" kind for one without, like lo); None if there is none."""
        try:
            reply = self.request(RTM_GETLINK, 0, ifinfomsg() + ifname(name))
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        index = _IFINFOMSG.unpack_from(reply)[2]
        kind = ""
        for a, value in attrs(reply, _IFINFOMSG.size):
            if a == IFLA_LINKINFO:
                for b, info in attrs(value, 0):
                    if b == IFLA_INFO_KIND:
                        kind = info.rstrip(b"\0").decode()
        return index, kind

    def links(self) -> dict[int, str]:
        """{index: name} of every interface."""
        names = {}
        for payload in self.dump(RTM_GETLINK, ifinfomsg()):
            index = _IFINFOMSG.unpack_from(payload)[2]
            for a, value in attrs(payload, _IFINFOMSG.size):
                if a == IFLA_IFNAME:
                    names[index] = value.rstrip(b"\0").decode()
        return names

    def index(self, name: str) -> int:
        found = self.link(name)
        if found is None:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return found[0]

    def add_veth(self, name: str, peer: str, peer_netns_fd: int) -> None:
        """A veth pair: `name` here, `peer` in the network namespace of `peer_netns_fd`."""
        peer_info = ifinfomsg() + ifname(peer) + attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        info = nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"veth"),
                      nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info)))
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifinfomsg() + ifname(name) + info)

    def add_bridge(self, name: str) -> None:
        info = nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifinfomsg() + ifname(name) + info)

    def set_link(self, index: int, *, up: bool = False, master: int | None = None) -> None:
        body = ifinfomsg(index, IFF_UP if up else 0, IFF_UP if up else 0)
        if master is not None:
            body += attr(IFLA_MASTER, struct.pack("=I", master))
        self.request(RTM_NEWLINK, NLM_F_ACK, body)

    def delete_link(self, name: str) -> bool:
        """Delete interface `name`; False if there is none. Deleting one end of a veth removes both."""
        try:
            self.request(RTM_DELLINK, NLM_F_ACK, ifinfomsg() + ifname(name))
        except OSError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    # ------------------------------------------------------------ IPv4 addresses and routes

    def add_address(self, index: int, ip: str, prefix_len: int) -> None:
        packed = socket.inet_aton(ip)
        body = _IFADDRMSG.pack(socket.AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, gateway: str, oif: int) -> None:
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                           RTN_UNICAST, 0)
        body += attr(RTA_GATEWAY, socket.inet_aton(gateway)) + attr(RTA_OIF, struct.pack("=I", oif))
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def addresses(self, index: int) -> set[tuple[str, int]]:
        """The IPv4 addresses of interface `index`, as (address, prefix length)."""
        found = set()
        for payload in self.dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, prefix_len, _flags, _scope, ifindex = _IFADDRMSG.unpack_from(payload)
            if family != socket.AF_INET or ifindex != index:
                continue
            values = dict(attrs(payload, _IFADDRMSG.size))
            address = values.get(IFA_LOCAL) or values.get(IFA_ADDRESS)
            if address:
                found.add((socket.inet_ntoa(address), prefix_len))
        return found

    def routes(self) -> list[tuple[str, int, int]]:
        """Every IPv4 route of every table, as (destination, prefix length, output interface or 0)."""
        found = []
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for payload in self.dump(RTM_GETROUTE, body):
            family, dst_len = _RTMSG.unpack_from(payload)[:2]
            if family != socket.AF_INET:
                continue
            values = dict(attrs(payload, _RTMSG.size))
            dst = socket.inet_ntoa(values[RTA_DST]) if RTA_DST in values else "0.0.0.0"
            oif = struct.unpack("=I", values[RTA_OIF])[0] if RTA_OIF in values else 0
            found.append((dst, dst_len, oif))
        return found
