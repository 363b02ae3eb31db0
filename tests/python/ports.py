"""TCP ports for the servers the tests start on 127.0.0.1.

A port is taken from below the kernel's ephemeral range
(net.ipv4.ip_local_port_range), where every outgoing connection gets its local
port: a port found free by binding to port 0 lies inside that range, and a
client connecting meanwhile may take it before the server binds it (seen in CI
as runzeo's "address already in use"). No port is handed out twice by one test
process, and each is checked free before it is handed out.
"""
import random
import socket
import threading

_handed_out = set()
_lock = threading.Lock()


def _candidates():
    low = 10000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = ephemeral_low - 1
    if high - low < 1000:   # an unusual range: fall back to the kernel's pick
        return None
    return low, high


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A TCP port on 127.0.0.1, free a moment ago, outside the ephemeral range."""
    bounds = _candidates()
    with _lock:
        if bounds is not None:
            for _ in range(1000):
                port = random.randint(*bounds)
                if port not in _handed_out and _bindable(port):
                    _handed_out.add(port)
                    return port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        _handed_out.add(port)
        return port
