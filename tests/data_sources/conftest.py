"""A local HTTP server for the dataset-download tests, and a guard that keeps every test in
this folder off the network except 127.0.0.1.

The server serves bytes registered per path, honours Range requests (so resuming is
tested for real), and can be told, per path and per request, to misbehave: ``drop`` (send
half the body, then close), ``html`` (answer with an error web page) or ``ignore_range``
(answer 200 with the whole file to a Range request).
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
ERROR_PAGE = b"<!DOCTYPE html><html><body>Quota exceeded, try later</body></html>"


class FixtureServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None]] = []  # (path, Range header) per request
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, data: bytes, *modes: str) -> str:
        """Serves ``data`` at ``path``; ``modes`` apply to the next requests, in order."""
        self.files[path] = data
        self.modes[path] = list(modes)
        return self.url + path

    def requests_to(self, prefix: str) -> list[tuple[str, str | None]]:
        return [entry for entry in self.log if entry[0].startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                path = urlsplit(self.path).path
                range_header = self.headers.get("Range")
                server.log.append((path, range_header))
                pending = server.modes.get(path) or []
                mode = pending.pop(0) if pending else "normal"
                if path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                if mode == "html":
                    self._send(200, ERROR_PAGE, {"Content-Type": "text/html"})
                    return
                data = server.files[path]
                status, start, end = 200, 0, len(data) - 1
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
                headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
                if match and mode != "ignore_range":
                    start = int(match.group(1))
                    if start >= len(data):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    if match.group(2):
                        end = min(end, int(match.group(2)))
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                body = data[start:end + 1]
                if mode == "drop":
                    self._send(status, body[: len(body) // 2], headers, length=len(body))
                    return  # HTTP/1.0: the connection closes, short of Content-Length
                self._send(status, body, headers)

            def _send(self, status, body, headers, length=None) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def server():
    fixture_server = FixtureServer()
    yield fixture_server
    fixture_server.close()


@pytest.fixture
def closed_port() -> int:
    """A local port that nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def learn2learn_installed():
    pytest.importorskip("learn2learn", reason="learn2learn is built by scripts/install.sh")


@pytest.fixture(autouse=True)
def local_network_only(monkeypatch):
    """Refuses, in this process, any connection or name lookup beyond 127.0.0.1 (and
    keeps any proxy out of the way, for the get_data.py subprocesses too)."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOCAL_HOSTS:
            raise AssertionError(f"a test tried to reach {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL_HOSTS:
            raise AssertionError(f"a test tried to look up {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for variable in ("NO_PROXY", "no_proxy"):  # a user's proxy must not see the fixtures
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
