"""Local TCP ports: a free one, or the one a server was asked for, claimed before the work; the
Host header names a server on it answers."""

from __future__ import annotations

import errno
import socket

from .errors import UserError

LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
WILDCARD = ("0.0.0.0", "::", "")


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


def allowed_hosts(host: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Host header names a server answers (the studio, `idtune serve`): loopback names, the
    address it is bound to (not a wildcard), and `extra` (`--allow-host`)."""
    names = list(LOOPBACK)
    for name in [host, *extra]:
        name = (name or "").strip().lower()
        if name in WILDCARD:
            continue
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"  # an IPv6 address, as a Host header writes it
        if "*" in name or "/" in name:
            raise UserError(f"--allow-host {name}: a host name or address, without wildcards")
        if name not in names:
            names.append(name)
    return names
