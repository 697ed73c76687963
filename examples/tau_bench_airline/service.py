"""The airline's system of record over HTTP: a small JSON service on loopback for the gate's lookups.

Reads (answers are the records as stored now, after any writes applied through ``/tools``)::

    GET  /health                              {"status": "ok", "users": n, "reservations": n, "flights": n,
                                               "changed": n}  (changed: records written since the last reset)
    GET  /users/{user_id}                     the user's profile as stored
    GET  /reservations/{reservation_id}       the reservation as stored
    GET  /flights/{flight_number}             {"flight_number", "origin", "destination",
                                               "scheduled_departure_time_est", "scheduled_arrival_time_est"}
    GET  /flights/{flight_number}/{date}      the database's record for that date: {"status": "available",
                                               "available_seats": {cabin: n}, "prices": {cabin: n}}, or another
                                               status with its times ("landed", "flying", "on time", "delayed",
                                               "cancelled")
    GET  /flight-dates?segments=HAT001:2024-05-20,HAT002:2024-05-21
                                              {"segments": [segment, ...]} in the order asked, one per
                                              flight_number:date (at most 20); a segment is
                                              {"flight_number", "date", "found"} plus, when the flight
                                              exists, its route and schedule, and when it flies that date,
                                              that date's record (status, seats, prices or times)
    GET  /reservations/{reservation_id}/context  {"reservation": as stored, "owner": the owner's profile
                                              with its "user_id" (null if unknown), "segments": a segment
                                              (as above) per flight of the reservation, in its order}
    GET  /users/{user_id}/context             {"user": the profile with its "user_id", "reservations":
                                              [{"reservation", "segments"}, ...] for each of its
                                              reservations, in the profile's order}
    GET  /search/direct?origin=&destination=&date=   the list search_direct_flight answers
    GET  /search/onestop?origin=&destination=&date=  the list of [first leg, second leg] search_onestop_flight answers

Writes (for a replay that applies each run's calls in order)::

    POST /tools/{tool_name}   body: the call's JSON arguments (an object; empty body = {})
                              -> {"ok": bool, "result": "<the tool's answer>"}; ok is false when it starts "Error"
    POST /reset               -> {"ok": true}: the database as on disk again

Errors: unknown id, date, tool or path -> 404 ``{"error": "..."}``; malformed input -> 400; wrong
method -> 405; a body over 1 MB -> 413. The service binds loopback only.

Usage::

    python examples/tau_bench_airline/service.py [--host 127.0.0.1] [--port 8100] [--db DIR]

(``--port 0`` takes a free port; the bound URL is printed either way.) ``running_service()``
serves a world from a background thread, for a replay or tests. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import re
import sys
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from world import TOOLS, AirlineWorld

MAX_BODY = 1_000_000
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SEARCH_TOOLS = {"direct": "search_direct_flight", "onestop": "search_onestop_flight"}
SEARCH_PARAMS = ("origin", "destination", "date")
MAX_SEGMENTS = 20


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class AirlineService(ThreadingHTTPServer):
    """The HTTP server holding one world; every request reads or writes it under one lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], world: AirlineWorld, *, log: bool = False) -> None:
        try:
            loopback = ipaddress.IPv4Address(address[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the airline service binds a loopback IPv4 address only (127.0.0.1), not {address[0]!r}")
        super().__init__(address, _Handler)
        self.world = world
        self.lock = threading.Lock()
        self.log = log

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is no error of the service's."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    # -- the routes: each returns the JSON body of a 200 or raises HttpError ------------------------------

    def get(self, segments: list[str], query: dict[str, list[str]]) -> Any:
        world = self.world
        match segments:
            case ["health"]:
                self._no_query(query)
                return {"status": "ok", **world.counts()}
            case ["users", user_id]:
                self._no_query(query)
                return _found(world.user(user_id), f"no user {user_id!r}")
            case ["reservations", reservation_id]:
                self._no_query(query)
                return _found(world.reservation(reservation_id), f"no reservation {reservation_id!r}")
            case ["reservations", reservation_id, "context"]:
                self._no_query(query)
                reservation = _found(world.reservation(reservation_id), f"no reservation {reservation_id!r}")
                owner = world.user(reservation["user_id"]) if isinstance(reservation.get("user_id"), str) else None
                return {
                    "reservation": reservation,
                    "owner": None if owner is None else {**owner, "user_id": reservation["user_id"]},
                    "segments": self._reservation_segments(reservation),
                }
            case ["users", user_id, "context"]:
                self._no_query(query)
                user = _found(world.user(user_id), f"no user {user_id!r}")
                reservations = [world.reservation(r) for r in user.get("reservations", []) if isinstance(r, str)]
                return {
                    "user": {**user, "user_id": user_id},
                    "reservations": [
                        {"reservation": r, "segments": self._reservation_segments(r)} for r in reservations if r
                    ],
                }
            case ["flight-dates"]:
                return {"segments": [self._segment(number, date) for number, date in self._segments_arg(query)]}
            case ["flights", flight_number]:
                self._no_query(query)
                return _found(world.flight(flight_number), f"no flight {flight_number!r}")
            case ["flights", flight_number, date]:
                self._no_query(query)
                _found(world.flight(flight_number), f"no flight {flight_number!r}")
                if not DATE.fullmatch(date):
                    raise HttpError(HTTPStatus.BAD_REQUEST, f"date must be YYYY-MM-DD, not {date!r}")
                return _found(world.flight_date(flight_number, date), f"flight {flight_number} has no date {date}")
            case ["search", kind] if kind in SEARCH_TOOLS:
                args = self._search_args(query)
                result = world.call(SEARCH_TOOLS[kind], args)
                if result.startswith("Error"):
                    raise HttpError(HTTPStatus.BAD_REQUEST, result)
                return json.loads(result)
        raise HttpError(HTTPStatus.NOT_FOUND, "no such resource")

    def post(self, segments: list[str], body: Any) -> Any:
        match segments:
            case ["tools", tool]:
                if tool not in TOOLS:
                    raise HttpError(HTTPStatus.NOT_FOUND, f"no tool {tool!r}; tools: {', '.join(sorted(TOOLS))}")
                if not isinstance(body, dict):
                    raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object of the tool's arguments")
                result = self.world.call(tool, body)
                return {"ok": not result.startswith("Error"), "result": result}
            case ["reset"]:
                self.world.reset()
                return {"ok": True}
        raise HttpError(HTTPStatus.NOT_FOUND, "no such resource")

    def _segment(self, flight_number: str, date: str) -> dict[str, Any]:
        """A flight on a date as the database holds it: found, route and schedule, that date's record."""
        flight = self.world.flight(flight_number)
        record = self.world.flight_date(flight_number, date) if flight is not None else None
        segment: dict[str, Any] = {**(flight or {}), **(record or {})}
        segment.update({"flight_number": flight_number, "date": date, "found": record is not None})
        return segment

    def _reservation_segments(self, reservation: dict[str, Any]) -> list[dict[str, Any]]:
        flights = reservation.get("flights")
        return [
            self._segment(str(f.get("flight_number")), str(f.get("date")))
            for f in (flights if isinstance(flights, list) else [])
            if isinstance(f, dict)
        ]

    @staticmethod
    def _segments_arg(query: dict[str, list[str]]) -> list[tuple[str, str]]:
        unknown = sorted(set(query) - {"segments"})
        if unknown:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unexpected query parameters: {', '.join(unknown)}")
        values = query.get("segments", [])
        if len(values) != 1 or not values[0]:
            raise HttpError(HTTPStatus.BAD_REQUEST, "give segments exactly once: flight_number:date,...")
        pairs = []
        for item in values[0].split(","):
            number, _, date = item.rpartition(":")
            if not number or not DATE.fullmatch(date):
                raise HttpError(HTTPStatus.BAD_REQUEST, f"a segment is flight_number:YYYY-MM-DD, not {item!r}")
            pairs.append((number, date))
        if len(pairs) > MAX_SEGMENTS:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"at most {MAX_SEGMENTS} segments")
        return pairs

    def allowed(self, segments: list[str]) -> str | None:
        """The method a known path takes, for a 405 (None for an unknown path)."""
        match segments:
            case ["health"] | ["users", _] | ["reservations", _] | ["flights", _] | ["flights", _, _]:
                return "GET"
            case ["users", _, "context"] | ["reservations", _, "context"] | ["flight-dates"]:
                return "GET"
            case ["search", kind] if kind in SEARCH_TOOLS:
                return "GET"
            case ["tools", _] | ["reset"]:
                return "POST"
        return None

    @staticmethod
    def _no_query(query: dict[str, list[str]]) -> None:
        if query:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unexpected query parameters: {', '.join(sorted(query))}")

    @staticmethod
    def _search_args(query: dict[str, list[str]]) -> dict[str, str]:
        unknown = sorted(set(query) - set(SEARCH_PARAMS))
        if unknown:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unexpected query parameters: {', '.join(unknown)}")
        args = {}
        for name in SEARCH_PARAMS:
            values = query.get(name, [])
            if len(values) != 1 or not values[0]:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"give {name} exactly once")
            args[name] = values[0]
        if not DATE.fullmatch(args["date"]):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"date must be YYYY-MM-DD, not {args['date']!r}")
        return args


def _found(record: Any, message: str) -> Any:
    if record is None:
        raise HttpError(HTTPStatus.NOT_FOUND, message)
    return record


class _Handler(BaseHTTPRequestHandler):
    server: AirlineService
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    timeout = 30  # seconds a connection may sit idle or send a body slowly
    _body_read = False

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def _answer(self, method: str) -> None:
        self._body_read = False
        headers: dict[str, str] = {}
        try:
            segments, query = self._target()
            allowed = self.server.allowed(segments)
            if allowed is None:
                raise HttpError(HTTPStatus.NOT_FOUND, "no such resource")
            if allowed != method:
                raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed here", {"Allow": allowed})
            if method == "POST":
                body = self._body(query)
                with self.server.lock:
                    payload = self.server.post(segments, body)
            else:
                with self.server.lock:
                    payload = self.server.get(segments, query)
            status = HTTPStatus.OK
        except HttpError as e:
            status, payload, headers = e.status, {"error": str(e)}, e.headers
        except Exception as e:  # a bug, not the input: say so rather than drop the connection
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {e!r}"}
        # a body left unread would be taken for the next request on this connection
        unread = not self._body_read and (
            "Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "").strip() not in ("", "0")
        )
        self._send(status, payload, headers, close=unread)

    def _target(self) -> tuple[list[str], dict[str, list[str]]]:
        try:
            parts = urlsplit(self.path)
            segments = [unquote(segment, errors="strict") for segment in parts.path.split("/")[1:]]
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except (UnicodeDecodeError, ValueError) as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"malformed URL: {e}") from e
        return segments, query

    def _body(self, query: dict[str, list[str]]) -> Any:
        if query:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unexpected query parameters: {', '.join(sorted(query))}")
        if "Transfer-Encoding" in self.headers:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from e
        if length < 0:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        try:
            raw = self.rfile.read(length) if length else b""
        except OSError as e:  # TimeoutError included
            raise HttpError(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive: {e}") from e
        if len(raw) < length:
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length")
        self._body_read = True
        if not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {e}") from e

    def _send(self, status: HTTPStatus, payload: Any, headers: dict[str, str], *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        if close:
            self.close_connection = True
            headers = {**headers, "Connection": "close"}
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The server's own refusals (a bad request line, an unknown method, ...) in JSON too."""
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        self._send(status, {"error": message or status.phrase}, {}, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log:
            super().log_message(format, *args)


@contextlib.contextmanager
def running_service(world: AirlineWorld | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``world`` (a fresh one by default) from a background thread; yields the base URL."""
    server = AirlineService((host, port), world if world is not None else AirlineWorld())
    thread = threading.Thread(target=server.serve_forever, name="airline-service", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The tau-bench airline's system of record over HTTP (loopback only).")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="0 takes a free port (default 8100)")
    parser.add_argument("--db", default=None, help="the folder of users.json, reservations.json, flights.json")
    parser.add_argument("--quiet", action="store_true", help="no request log on stderr")
    options = parser.parse_args(argv)
    try:
        server = AirlineService((options.host, options.port), AirlineWorld(options.db), log=not options.quiet)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    print(f"airline service on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
