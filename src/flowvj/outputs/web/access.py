"""Who may reach the browser view: the Host, Origin and token checks, the headers every response
carries, and the machine's own addresses (which Host names are ours, and the URLs to print when
bound beyond loopback).

Why each check (server.py applies Host and Origin to every route, the token to the WebSocket):
  - Host: a site the VJ's browser visits can point its own name at 127.0.0.1 (DNS rebinding) and
    then be "same-origin" with us; its requests still say `Host: evil.example`, so a Host that is
    not one of our names is refused.
  - Origin: browsers send it on every WebSocket handshake (and on cross-site fetches), and a
    WebSocket is not bound by the same-origin policy, so any page could otherwise drive the show.
    Only the page's own origin (http:// + the Host it was loaded from) passes.
  - token: bound beyond loopback, anyone on the network can reach the port; the random token in
    the printed URL is the one thing a stranger on the LAN does not have. It guards the WebSocket
    only (the page and its script are the same for everyone; the controls are on the socket), and
    it travels in the URL's fragment (`/#token=...`), which a browser never sends: not in a request
    line, not in a Referer. The page reads it, clears it from the address bar and passes it on
    `/ws?token=...`. No cookie: a cookie has no port, so it would reach every other service on the
    same host. Logged request details have it blanked (`redact`).
  - HEADERS, on every response: no other page may frame ours (an invisible frame on another local
    page turned one click into a control change) or make the browser guess a file's type.
"""

import ipaddress
import re
import secrets
import socket

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("", "0.0.0.0", "::")  # bound to every interface (of one or both families)
HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",            # the same, for browsers without frame-ancestors
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
TOKEN_IN_TEXT = re.compile(r"(token=)[\w%.~-]+", re.IGNORECASE)  # ours is URL-safe base64


def is_loopback(host):
    """Whether binding `host` keeps the server on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a wildcard or a host name: reachable from the network
        return False


def new_token():
    """A random token for the URLs of a server bound beyond loopback (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def token_matches(given, token):
    """Constant-time comparison, so the token cannot be guessed a character at a time."""
    return secrets.compare_digest((given or "").encode(), token.encode())


def redact(text):
    """`text` (a request line, an error message) with any token=... value blanked, for the log."""
    return TOKEN_IN_TEXT.sub(r"\1...", text)


def host_and_port(value, default_port=80):
    """A Host header ('name:port', '[v6]:port', 'name') -> (lowercased name, port), or None when
    malformed. Browsers leave out the port when it is the scheme's default (80 for http)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") == 1:
        name, port = value.split(":")
    elif ":" in value:  # a bare IPv6 address is not a valid Host
        return None
    else:
        name, port = value, ""
    if not name:
        return None
    if not port:
        return name, default_port
    if not (port.isascii() and port.isdigit()):
        return None
    return name, int(port)


def origin_host(origin):
    """'http://name:port' -> (name, port), or None for anything else ('null', https, a path)."""
    if not origin.lower().startswith("http://"):
        return None
    rest = origin[len("http://"):]
    if "/" in rest or "@" in rest:
        return None
    return host_and_port(rest)


def url_host(address):
    """An address as it goes into a URL: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def own_addresses(host):
    """The non-loopback addresses a server bound to `host` can be reached at, best first.

    A wildcard stands for every interface: the address the kernel would route outward from (a UDP
    connect() sends nothing, it only picks the local address), then whatever the host name
    resolves to. 0.0.0.0 listens on IPv4 only and :: on IPv6 only, so each gives its own family.
    A specific address or name stands for itself. Needs no extra package, at the price of not
    listing every interface of a machine with several networks.
    """
    if host not in WILDCARDS:
        return [host]
    families = {"0.0.0.0": (socket.AF_INET,), "::": (socket.AF_INET6,)}.get(
        host, (socket.AF_INET, socket.AF_INET6))
    found = []
    for family in families:
        probe = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"  # documentation ranges
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))
                found.append(udp.getsockname()[0])
        except OSError:  # no route of that family
            pass
        try:
            found += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, family)]
        except OSError:
            pass
    addresses = []
    for address in found:
        address = address.split("%")[0]  # a link-local scope id
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified) and address not in addresses:
            addresses.append(address)
    return addresses


def own_names(host):
    """The names (lowercased) a Host header may carry for a server bound to `host`: loopback
    names always; beyond loopback also its own addresses and the machine's host names."""
    names = set(LOOPBACK_NAMES)
    if not is_loopback(host):
        names.update(own_addresses(host))
        hostname = socket.gethostname()
        names.update({hostname, hostname + ".local"})  # .local: mDNS; no getfqdn (a slow DNS lookup)
    return {name.lower() for name in names if name}
