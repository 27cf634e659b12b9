"""A port on 127.0.0.1 to see whether a command reached the network."""

from __future__ import annotations

import socket


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.setblocking(False)
        self.port = self.server.getsockname()[1]

    def accepted(self) -> int:
        """Connections waiting in the backlog: each one reached the port."""
        count = 0
        while True:
            try:
                connection, _ = self.server.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1
