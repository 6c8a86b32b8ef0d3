"""What a request to ``neurosleuth serve`` must satisfy before it is answered.

- ``Host`` names this server (DNS rebinding: a page on ``evil.example`` whose name is made to
  resolve to 127.0.0.1 sends ``Host: evil.example``, so checking the name defeats it): a loopback
  name (``localhost``, ``127.0.0.1``, ``[::1]``) or the host the server was bound to, each with the
  server's port. A server bound to every interface (``0.0.0.0``, ``::``) also takes this machine's
  own names and addresses.
- The path is printable UTF-8 with well-formed percent escapes and of sane length (a NUL made the
  file layer raise instead of answer).
- A file is served only where its real path (links resolved) lies under the served root.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

MAX_PATH = 2048  # characters of a request target
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("", "0.0.0.0", "::")
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def url_host(host: str) -> str:
    """``host`` as written in a URL or ``Host`` header (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _own_names() -> set[str]:
    """This machine's names and the addresses they resolve to (for a wildcard bind)."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return {url_host(n) for n in names if n}


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values (lower case) a server bound to ``host``:``port`` answers."""
    names = set(LOOPBACK_NAMES)
    if host in WILDCARDS:
        names |= _own_names()
    else:
        names.add(url_host(host))
    hosts = {f"{n.lower()}:{port}" for n in names}
    if port == 80:  # browsers leave the default port out
        hosts |= {n.lower() for n in names}
    return frozenset(hosts)


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or address) only reaches this machine."""
    if host in WILDCARDS:
        return False
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                               for i in infos)


def path_problem(target: str) -> tuple[int, str] | None:
    """Why a request target cannot be answered, as (HTTP status, reason); None when it can."""
    if len(target) > MAX_PATH:
        return 414, f"request target longer than {MAX_PATH} characters"
    if BAD_ESCAPE.search(target):
        return 400, "bad percent-encoding"
    try:
        path = unquote(urlsplit(target).path, errors="strict")
    except (ValueError, UnicodeDecodeError):  # an invalid URL or an escape that is not UTF-8
        return 400, "bad request target"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return 400, "control character in the path"
    return None


def inside(root: Path, path: str | Path) -> Path | None:
    """``path`` with every link resolved, when that lies under ``root`` (itself resolved)."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL
        return None
    return real if real.is_relative_to(root) else None
