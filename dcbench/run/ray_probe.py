"""Is there a Ray cluster at ``--ray-address``? A bounded check before ``ray.init``.

``ray.init`` on an address where nothing (or something other than Ray) listens retries for minutes
and prints dozens of warning lines. A Ray head's GCS (``host:port``) and its client server
(``ray://host:port``) are gRPC servers, so they answer an HTTP/2 connection preface with a SETTINGS
frame: connecting and reading that frame, with a timeout, tells "no cluster there" in seconds.
"""

from __future__ import annotations

import socket

from dcbench.host.errors import DcbenchError

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
SETTINGS_FRAME = 0x04
FIX = (
    "start the cluster with `ray start --head` or fix --ray-address (the head's host:port, 6379 by default, "
    "or ray://host:port)"
)


def parse_ray_address(address: str) -> tuple[str, int] | None:
    """(host, port) to probe, or None for Ray's own discovery modes ``auto`` and ``local``."""
    if address in ("auto", "local"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DcbenchError(f"--ray-address {address!r} is not host:port, ray://host:port, auto or local; {FIX}")
    return host, int(port)


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Raise a one-line error unless a gRPC server (a Ray head) answers at ``address`` within
    ``timeout`` seconds per step."""
    target = parse_ray_address(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout) as conn:
            conn.sendall(HTTP2_PREFACE)
            header = _read(conn, 9)
    except TimeoutError:
        raise DcbenchError(f"cannot reach the Ray cluster at {address}: no answer within {timeout:g}s; {FIX}") from None
    except OSError as exc:
        raise DcbenchError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; {FIX}") from None
    if len(header) < 9 or header[3] != SETTINGS_FRAME:
        raise DcbenchError(f"something listens at {address}, but it is not a Ray cluster (no gRPC answer); {FIX}")


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
