"""Free ports on 127.0.0.1 for the servers the tests and benchmarks start.

Binding port 0 hands out a port from the range the kernel also draws on for
every outgoing connection, so another test's client can take it in the moment
before the server binds it (CI saw exactly that: a server refused to start
because its port was in use). These ports come from below that range instead,
which nothing draws on by itself; tests/it/support.rs chooses its ports the
same way, and each process starts at its own offset."""

import os
import socket

_handed_out = [0]


def free_port():
    """A port below the ephemeral range that nothing listens on right now."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    low = min(10_000, ephemeral_start // 2)
    span = ephemeral_start - low
    offset = (os.getpid() * 89 + 7919) % span
    for _ in range(span):
        port = low + (offset + _handed_out[0]) % span
        _handed_out[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1 below the ephemeral range")


def free_ports(count):
    """`count` distinct free ports."""
    return [free_port() for _ in range(count)]
