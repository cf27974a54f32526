"""Keep-alive HTTP connections to the nodes, a few idle ones kept per node.

Built on http.client's public API: ``HTTPConnection.connect()`` is the hook
http.client documents for opening the socket, so socket options and TLS are
applied there.
"""

import http.client
import socket
import ssl
import threading
import time

#: idle connections kept per node
MAX_IDLE_PER_NODE = 8
#: an idle connection older than this is closed rather than reused (nodes keep them open for 65 s)
MAX_IDLE_SECONDS = 30.0


def open_socket(host, port, timeout, socket_options=()):
    """socket.create_connection, with socket options set before connecting (e.g. SO_RCVBUF)."""
    error = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            for level, option, value in socket_options:
                sock.setsockopt(level, option, value)
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as e:
            error = e
            if sock is not None:
                sock.close()
    if error is not None:
        raise error
    raise OSError("getaddrinfo returned nothing for %s" % host)


class NodeConnection(http.client.HTTPConnection):
    """One connection to a node: connects within ``connect_timeout``, then waits ``timeout`` for each read."""

    def __init__(self, node, connect_timeout, timeout, ssl_context=None, socket_options=()):
        super().__init__(node.host, node.port, timeout=connect_timeout)
        self.node_url = node.url
        self.read_timeout = timeout
        self.ssl_context = ssl_context
        self.socket_options = socket_options
        self.idle_since = None

    def connect(self):
        sock = open_socket(self.host, self.port, self.timeout, self.socket_options)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ConnectionPool:
    """Idle connections per node, for one client. Thread-safe; a connection is used by one thread at a time."""

    def __init__(self, connect_timeout, timeout, ssl_context=None, socket_options=()):
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._socket_options = socket_options
        self._idle = {}
        self._lock = threading.Lock()

    def take(self, node, reuse=True):
        """``(connection, reused)``: an idle connection to ``node`` if there is one (and ``reuse``), else a new, connected one.

        A new connection raises OSError when the node cannot be reached.
        """
        now = time.monotonic()
        stale = []
        conn = None
        with self._lock:
            idle = self._idle.get(node.url, [])
            while reuse and idle:
                candidate = idle.pop()
                if now - candidate.idle_since < MAX_IDLE_SECONDS:
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            old.close()
        if conn is not None:
            return conn, True
        ssl_context = None
        if node.https:
            ssl_context = self._ssl_context or ssl.create_default_context()
        conn = NodeConnection(node, self._connect_timeout, self._timeout, ssl_context, self._socket_options)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        return conn, False

    def give_back(self, conn, response):
        """Keeps ``conn`` for the next request to its node if ``response`` was read to its end and allows it; else closes it."""
        if not response.isclosed() or response.will_close or conn.sock is None:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(conn.node_url, [])
            if len(idle) < MAX_IDLE_PER_NODE:
                idle.append(conn)
                return
        conn.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
