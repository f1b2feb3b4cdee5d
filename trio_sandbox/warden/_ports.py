"""Bind published ports with the standard library, before the sandbox (and Trio) start."""

from __future__ import annotations

import socket

from ._spec import PortSpec


def bind_published_port(port: PortSpec) -> socket.socket:
    """A listening socket on HOST_IP:HOST_PORT; a taken port fails the wrap at once."""
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((port.host_ip, port.host_port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
