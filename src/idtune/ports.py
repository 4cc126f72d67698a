"""Local TCP ports: a free one, or the one a server was asked for, claimed before the work."""

from __future__ import annotations

import errno
import socket

from .errors import UserError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bind(host: str, port: int) -> socket.socket:
    """Claim HOST:PORT before the work (loading a model); a taken or impossible port is one line."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: a TCP port is between 1 and 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise UserError(f"--host {host} --port {port}: cannot listen there ({why})") from None
    sock.set_inheritable(True)
    return sock
