"""Whether a Ray cluster answers at an ``--address``, checked in at most a few seconds before a command
makes its results folder or calls Ray (whose own connection retries for minutes, printing "Failed to
connect to GCS", at an address where nothing or something else listens).

A Ray head's GCS is a gRPC server: it answers the HTTP/2 connection preface with a SETTINGS frame. So the
check opens a TCP connection, sends the preface and an empty SETTINGS frame, and reads one frame header:
a refused or silent port, or a server speaking anything else (a plain HTTP server), is refused in one
line. ``auto`` (the Ray started on this machine) is left to Ray, which answers at once. A Ray client
address (``ray://host:port``) is a gRPC server too and is checked the same way. Imports no Ray.
"""
from __future__ import annotations

import socket

#: seconds to wait for the connection and for the first frame
PROBE_TIMEOUT_S = 3.0
#: the HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, sections 3.4 and 6.5)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 0x04, 0, 0, 0, 0, 0])
#: the frame type a gRPC server's first frame has
SETTINGS_FRAME = 0x04
FRAME_HEADER_BYTES = 9


def host_and_port(address: str, given: str) -> tuple[str, int]:
    """``("10.0.0.5", 6379)`` of ``10.0.0.5:6379`` or ``ray://10.0.0.5:10001`` (``[::1]:6379`` too);
    ``ValueError`` naming how it was ``given`` (``--address x`` or ``RAY_ADDRESS=x``) for anything else."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{given}: not a Ray address: give auto, host:port (the cluster head's "
                         "address, as `ray start --head` prints it) or ray://host:port")
    return host, int(port)


def check_ray_address(address: str, given: str) -> None:
    """Raise ``ValueError`` naming how the address was ``given`` (``--address x`` or ``RAY_ADDRESS=x``) unless
    it is ``auto`` or a Ray cluster's gRPC server answers there within :data:`PROBE_TIMEOUT_S` seconds."""
    if address == "auto":
        return
    host, port = host_and_port(address, given)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as connection:
            connection.settimeout(PROBE_TIMEOUT_S)
            connection.sendall(HTTP2_PREFACE)
            reply = b""
            while len(reply) < FRAME_HEADER_BYTES:
                chunk = connection.recv(FRAME_HEADER_BYTES - len(reply))
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        raise ValueError(f"{given}: no Ray cluster answers there ({error.strerror or error}); start "
                         "one with `ray start --head`, or give the address it prints") from None
    if len(reply) < FRAME_HEADER_BYTES or reply[3] != SETTINGS_FRAME:
        raise ValueError(f"{given}: something answers there, but not a Ray cluster (it does not speak "
                         "gRPC); give the address `ray start --head` prints")
