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
