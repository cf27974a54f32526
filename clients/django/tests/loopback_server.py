"""A TCP server on a free loopback port, for fake nodes that do what a real one cannot be made to do."""

import socket
import threading


class LoopbackServer:
    """Accepts connections in a thread until closed and hands each to ``accepted(conn)``.

    Subclasses set what ``accepted`` needs before calling ``__init__``: the
    first connection may arrive as soon as it returns.
    """

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        # Short, so that close() ends the accept loop at once.
        self.server.settimeout(0.05)
        self.url = "http://127.0.0.1:%d" % self.server.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted(conn)

    def accepted(self, conn):
        raise NotImplementedError

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        self.server.close()


class CuttingProxy(LoopbackServer):
    """Forwards every connection to ``upstream_url``; can cut the first as a network failure would.

    The first connection passes on at most ``limit`` bytes of the answer and
    holds back the rest until ``cut()`` ends it with a clean close. So what the
    reader already has when the connection breaks is known, however much the
    kernel's buffers would have taken in meanwhile. ``limit`` must cover the
    reader's first read, which waits for a full buffer. Connections after the
    first pass everything. ``connections`` counts them.
    """

    def __init__(self, upstream_url, limit):
        host, port = upstream_url.split("://", 1)[1].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.limit = limit
        self.connections = 0
        self.sockets = []
        self._cut = threading.Event()
        super().__init__()

    def accepted(self, conn):
        self.connections += 1
        upstream = socket.create_connection(self.upstream, timeout=5)
        self.sockets += [conn, upstream]
        first = self.connections == 1
        threading.Thread(target=self._pump, args=(conn, upstream, None), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, conn, self.limit if first else None), daemon=True).start()

    def _pump(self, source, sink, limit):
        passed = 0
        try:
            while limit is None or passed < limit:
                data = source.recv(65536 if limit is None else min(65536, limit - passed))
                if not data:
                    break
                sink.sendall(data)
                passed += len(data)
            if limit is not None:
                self._cut.wait()
                # What the node sent past the limit never reaches the reader.
                source.close()
            # A FIN, not a reset: the reader keeps what it was given and then meets the end.
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self):
        self._cut.set()

    def close(self):
        self._cut.set()
        super().close()
        for s in self.sockets:
            s.close()
