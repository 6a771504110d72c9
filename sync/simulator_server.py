"""The simulator served over HTTP: the external API's routes, plus its state and faults under /_simulator/."""

import hmac
import json
import logging
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sync.simulator import ExternalSimulator, Reply

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_simulator/"
CONTROL_REFUSED = Reply(HTTPStatus.UNAUTHORIZED, {"detail": "the simulator's controls need its bearer token"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client reuses its connection
    # Headers and body go out in separate writes; without TCP_NODELAY the client's delayed
    # ACK adds ~40 ms to every call.
    disable_nagle_algorithm = True
    server: "SimulatorServer"

    def do_GET(self):
        if self.path == "/health":
            self._send(Reply(HTTPStatus.OK, {"status": "ok"}))
        elif self.path.startswith(CONTROL_PREFIX) and not self._may_control():
            self._send(CONTROL_REFUSED)
        elif self.path == "/_simulator/applied":
            self._send(Reply(HTTPStatus.OK, {"applied": self.server.simulator.applied_in_order()}))
        elif self.path == "/_simulator/stats":
            self._send(Reply(HTTPStatus.OK, self.server.simulator.stats()))
        else:
            self._send(Reply(HTTPStatus.NOT_FOUND, {"detail": "not found"}))

    def do_POST(self):
        body = self._body()
        if self.path.startswith(CONTROL_PREFIX) and not self._may_control():
            self._send(CONTROL_REFUSED)
        elif self.path == "/_simulator/reset":
            self.server.simulator.reset()
            self._send(Reply(HTTPStatus.NO_CONTENT))
        elif self.path == "/_simulator/faults":
            try:
                self.server.simulator.configure(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                self._send(Reply(HTTPStatus.BAD_REQUEST, {"detail": str(exc)}))
            else:
                self._send(Reply(HTTPStatus.OK, self.server.simulator.stats()))
        else:
            self._contract(body)

    def do_PUT(self):
        self._contract(self._body())

    def do_DELETE(self):
        self._contract(self._body())

    def _may_control(self) -> bool:
        """The state and faults under /_simulator/ need the simulator's token, when it has one."""
        token = self.server.simulator.token
        return not token or hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}")

    def _contract(self, body: bytes) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._send(self.server.simulator.handle(self.command, self.path, headers, body))

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        if reply.lost:
            self.close_connection = True
            return
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        logger.info("%s %s", self.address_string(), format % args)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    server_address: tuple[str, int]  # an AF_INET socket's (host, port) once bound

    def __init__(self, address: tuple[str, int], simulator: ExternalSimulator):
        super().__init__(address, _Handler)
        self.simulator = simulator

    def handle_error(self, request, client_address):
        # A client that gave up (timed out, was stopped) is not the simulator's problem.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
