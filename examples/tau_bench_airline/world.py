"""The tau-bench airline's system of record: its data and the effect of each of its tools.

``AirlineWorld`` loads the airline's database (``users.json``, ``reservations.json``,
``flights.json``: the state at the start of every tau-bench airline run) and applies the
airline's tools to it exactly as tau-bench does, returning the same text each tool returns
(JSON, or ``"Error: ..."``). The tools are reimplemented from ``tau_bench/envs/airline/tools/``
of sierra-research/tau-bench (commit 59a200c6, MIT licence, Copyright (c) 2024 Sierra; the
licence is in the data folder), including their quirks, which the recorded runs depend on:
``get_reservation_details`` answers ``"Error: user not found"`` for an unknown reservation,
``update_reservation_flights`` keeps the reservation's old ``cabin``, no write changes a flight's
seats, ``book_reservation`` names new reservations HATHAT, HATHAU, HATHAV, and
``search_onestop_flight`` reads the second leg's seats and prices on the first leg's date. As in
tau-bench's environment, an exception inside a tool (a missing argument, a wrong type, an
unknown cabin) becomes ``"Error: <exception>"``, and an unknown tool ``"Unknown action <name>"``.
Two departures, both where tau-bench gives no answer: ``calculate`` refuses integer powers too
large to compute quickly (tau-bench would hang), and ``send_certificate`` answers ``""`` where
tau-bench's tool returns ``None`` (the user already holds its three certificate ids).

The database is read once per process and never written: each world keeps, per table, a copy of
only the records it changed or added (copy on write), so ``reset()`` just drops those copies.

The database folder: ``AirlineWorld(db_dir)``, else ``$TAU_AIRLINE_DB``, else the first
``shared/eval/tau-bench-airline/db`` found walking up from this file (the data checkout beside
the repository). Standard library only.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

Record = dict[str, Any]
DB_ENV = "TAU_AIRLINE_DB"
TABLES = ("users", "reservations", "flights")
_MAX_POWER_BITS = 100_000  # calculate: the integer powers of one expression stay below 2**this

_pristine: dict[Path, dict[str, dict[str, Record]]] = {}
_pristine_lock = threading.Lock()


def default_db_dir() -> Path:
    """``$TAU_AIRLINE_DB``, else the ``shared/eval/tau-bench-airline/db`` nearest above this file."""
    if env := os.environ.get(DB_ENV):
        return Path(env)
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "eval" / "tau-bench-airline" / "db"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no shared/eval/tau-bench-airline/db above {__file__}; set {DB_ENV}")


def _load(db_dir: Path) -> dict[str, dict[str, Record]]:
    """The database as read from disk, once per folder and process (callers never write it)."""
    key = db_dir.resolve()
    with _pristine_lock:
        if key not in _pristine:
            tables = {}
            for name in TABLES:
                with (key / f"{name}.json").open(encoding="utf-8") as handle:
                    tables[name] = json.load(handle)
            _pristine[key] = tables
        return _pristine[key]


class _Table:
    """One table read like tau-bench's dict: the shared pristine records under this world's
    copies of the records it changed or added. Reads return the stored record, which callers
    must not mutate; a write first takes ``for_write``, which copies the record on its first write."""

    def __init__(self, pristine: dict[str, Record]) -> None:
        self._pristine = pristine
        self._changed: dict[str, Record] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._changed or key in self._pristine

    def __getitem__(self, key: str) -> Record:
        if key in self._changed:
            return self._changed[key]
        return self._pristine[key]

    def for_write(self, key: str) -> Record:
        if key not in self._changed:
            self._changed[key] = copy.deepcopy(self._pristine[key])
        return self._changed[key]

    def put(self, key: str, record: Record) -> None:
        self._changed[key] = record

    def values(self) -> Iterator[Record]:
        """In tau-bench's order: the stored records in file order, then the added ones."""
        for key, record in self._pristine.items():
            yield self._changed.get(key, record)
        for key, record in self._changed.items():
            if key not in self._pristine:
                yield record

    def __len__(self) -> int:
        return len(self._pristine) + sum(key not in self._pristine for key in self._changed)

    def changed(self) -> int:
        return len(self._changed)

    def reset(self) -> None:
        self._changed.clear()


class _Data:
    def __init__(self, pristine: dict[str, dict[str, Record]]) -> None:
        self.users = _Table(pristine["users"])
        self.reservations = _Table(pristine["reservations"])
        self.flights = _Table(pristine["flights"])


# The tools: tau-bench's code, step for step; a record is taken for_write only where tau-bench
# writes it. Each carries tau-bench's qualified name so a bad call's TypeError reads the same.


def _book_reservation(
    data: _Data,
    user_id: Any,
    origin: Any,
    destination: Any,
    flight_type: Any,
    cabin: Any,
    flights: Any,
    passengers: Any,
    payment_methods: Any,
    total_baggages: Any,
    nonfree_baggages: Any,
    insurance: Any,
) -> str:
    reservations, users = data.reservations, data.users
    if user_id not in users:
        return "Error: user not found"
    user = users[user_id]

    reservation_id = "HATHAT"  # tau-bench: "assume each task makes at most 3 reservations"
    if reservation_id in reservations:
        reservation_id = "HATHAU"
        if reservation_id in reservations:
            reservation_id = "HATHAV"

    reservation = {
        "reservation_id": reservation_id,
        "user_id": user_id,
        "origin": origin,
        "destination": destination,
        "flight_type": flight_type,
        "cabin": cabin,
        "flights": copy.deepcopy(flights),
        "passengers": passengers,
        "payment_history": payment_methods,
        "created_at": "2024-05-15T15:00:00",
        "total_baggages": total_baggages,
        "nonfree_baggages": nonfree_baggages,
        "insurance": insurance,
    }

    total_price = 0
    for flight in reservation["flights"]:
        flight_number = flight["flight_number"]
        if flight_number not in data.flights:
            return f"Error: flight {flight_number} not found"
        flight_data = data.flights[flight_number]
        if flight["date"] not in flight_data["dates"]:
            return f"Error: flight {flight_number} not found on date {flight['date']}"
        flight_date_data = flight_data["dates"][flight["date"]]
        if flight_date_data["status"] != "available":
            return f"Error: flight {flight_number} not available on date {flight['date']}"
        if flight_date_data["available_seats"][cabin] < len(passengers):
            return f"Error: not enough seats on flight {flight_number}"
        flight["price"] = flight_date_data["prices"][cabin]
        flight["origin"] = flight_data["origin"]
        flight["destination"] = flight_data["destination"]
        total_price += flight["price"] * len(passengers)

    if insurance == "yes":
        total_price += 30 * len(passengers)
    total_price += 50 * nonfree_baggages

    for payment_method in payment_methods:
        payment_id = payment_method["payment_id"]
        amount = payment_method["amount"]
        if payment_id not in user["payment_methods"]:
            return f"Error: payment method {payment_id} not found"
        if (
            user["payment_methods"][payment_id]["source"] in ["gift_card", "certificate"]
            and user["payment_methods"][payment_id]["amount"] < amount
        ):
            return f"Error: not enough balance in payment method {payment_id}"
    paid = sum(payment["amount"] for payment in payment_methods)
    if paid != total_price:
        return f"Error: payment amount does not add up, total price is {total_price}, but paid {paid}"

    user = users.for_write(user_id)
    for payment_method in payment_methods:
        payment_id = payment_method["payment_id"]
        amount = payment_method["amount"]
        if user["payment_methods"][payment_id]["source"] == "gift_card":
            user["payment_methods"][payment_id]["amount"] -= amount
        elif user["payment_methods"][payment_id]["source"] == "certificate":
            del user["payment_methods"][payment_id]

    reservations.put(reservation_id, reservation)
    user["reservations"].append(reservation_id)
    return json.dumps(reservation)


def _calculate(data: _Data, expression: Any) -> str:
    if not all(char in "0123456789+-*/(). " for char in expression):
        return "Error: invalid characters in expression"
    if not _powers_are_small(expression):
        return "Error: exponent too large"
    try:
        return str(round(float(eval(expression, {"__builtins__": None}, {})), 2))  # noqa: S307 (digits and + - * / ( ) . only)
    except Exception as e:
        return f"Error: {e}"


def _powers_are_small(expression: str) -> bool:
    """False when the expression's integer powers hold more than _MAX_POWER_BITS bits in all
    (``9**9**9**9`` would keep eval busy for ever). Innermost powers are measured first, so
    measuring one never computes a larger one; what does not parse is left to eval to report."""
    if not isinstance(expression, str):
        return True
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return True
    powers: list[tuple[int, ast.BinOp]] = []
    stack: list[tuple[int, ast.AST]] = [(0, tree.body)]
    while stack:
        depth, node = stack.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            powers.append((depth, node))
        stack.extend((depth + 1, child) for child in ast.iter_child_nodes(node))
    bits = 0.0
    for _, power in sorted(powers, key=lambda item: -item[0]):
        try:
            base, exponent = (
                eval(compile(ast.Expression(body=side), "<string>", "eval"), {"__builtins__": None}, {})  # noqa: S307
                for side in (power.left, power.right)
            )
        except Exception:
            return True  # eval raises the same, or an earlier, error
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            bits += exponent * math.log2(abs(base))
            if bits > _MAX_POWER_BITS:
                return False
    return True


def _cancel_reservation(data: _Data, reservation_id: Any) -> str:
    reservations = data.reservations
    if reservation_id not in reservations:
        return "Error: reservation not found"
    reservation = reservations.for_write(reservation_id)
    refunds = []
    for payment in reservation["payment_history"]:
        refunds.append({"payment_id": payment["payment_id"], "amount": -payment["amount"]})
    reservation["payment_history"].extend(refunds)
    reservation["status"] = "cancelled"
    return json.dumps(reservation)


def _get_reservation_details(data: _Data, reservation_id: Any) -> str:
    if reservation_id in data.reservations:
        return json.dumps(data.reservations[reservation_id])
    return "Error: user not found"  # sic: tau-bench's text


def _get_user_details(data: _Data, user_id: Any) -> str:
    if user_id in data.users:
        return json.dumps(data.users[user_id])
    return "Error: user not found"


# fmt: off
AIRPORTS = {
    "SFO": "San Francisco", "JFK": "New York", "LAX": "Los Angeles", "ORD": "Chicago", "DFW": "Dallas",
    "DEN": "Denver", "SEA": "Seattle", "ATL": "Atlanta", "MIA": "Miami", "BOS": "Boston", "PHX": "Phoenix",
    "IAH": "Houston", "LAS": "Las Vegas", "MCO": "Orlando", "EWR": "Newark", "CLT": "Charlotte",
    "MSP": "Minneapolis", "DTW": "Detroit", "PHL": "Philadelphia", "LGA": "LaGuardia",
}
# fmt: on


def _list_all_airports(data: _Data) -> str:
    return json.dumps(AIRPORTS)


def _search_direct_flight(data: _Data, origin: Any, destination: Any, date: Any) -> str:
    results = []
    for flight in data.flights.values():
        if (
            flight["origin"] == origin
            and flight["destination"] == destination
            and date in flight["dates"]
            and flight["dates"][date]["status"] == "available"
        ):
            results.append({k: v for k, v in flight.items() if k != "dates"})
            results[-1].update(flight["dates"][date])
    return json.dumps(results)


def _search_onestop_flight(data: _Data, origin: Any, destination: Any, date: Any) -> str:
    results = []
    for flight1 in data.flights.values():
        if flight1["origin"] != origin:
            continue
        for flight2 in data.flights.values():
            if flight2["destination"] == destination and flight1["destination"] == flight2["origin"]:
                date2 = f"2024-05-{int(date[-2:]) + 1}" if "+1" in flight1["scheduled_arrival_time_est"] else date
                if flight1["scheduled_arrival_time_est"] > flight2["scheduled_departure_time_est"]:
                    continue
                if (
                    date in flight1["dates"]
                    and date2 in flight2["dates"]
                    and flight1["dates"][date]["status"] == "available"
                    and flight2["dates"][date2]["status"] == "available"
                ):
                    result1 = {k: v for k, v in flight1.items() if k != "dates"}
                    result1.update(flight1["dates"][date])
                    result1["date"] = date
                    result2 = {k: v for k, v in flight2.items() if k != "dates"}
                    result2.update(flight2["dates"][date])  # sic: tau-bench reads the first leg's date
                    result2["date"] = date2
                    results.append([result1, result2])
    return json.dumps(results)


def _send_certificate(data: _Data, user_id: Any, amount: Any) -> str:
    users = data.users
    if user_id not in users:
        return "Error: user not found"
    for number in [3221322, 3221323, 3221324]:  # tau-bench: "assume at most 3 cases per task"
        payment_id = f"certificate_{number}"
        if payment_id not in users[user_id]["payment_methods"]:
            user = users.for_write(user_id)
            user["payment_methods"][payment_id] = {"source": "certificate", "amount": amount, "id": payment_id}
            return f"Certificate {payment_id} added to user {user_id} with amount {amount}."
    return ""  # tau-bench's tool returns None here


def _think(data: _Data, thought: Any) -> str:
    return ""


def _transfer_to_human_agents(data: _Data, summary: Any) -> str:
    return "Transfer successful"


def _update_reservation_baggages(
    data: _Data, reservation_id: Any, total_baggages: Any, nonfree_baggages: Any, payment_id: Any
) -> str:
    users, reservations = data.users, data.reservations
    if reservation_id not in reservations:
        return "Error: reservation not found"
    reservation = reservations[reservation_id]

    total_price = 50 * max(0, nonfree_baggages - reservation["nonfree_baggages"])
    owner = reservation["user_id"]
    if payment_id not in users[owner]["payment_methods"]:
        return "Error: payment method not found"
    payment_method = users[owner]["payment_methods"][payment_id]
    if payment_method["source"] == "certificate":
        return "Error: certificate cannot be used to update reservation"
    elif payment_method["source"] == "gift_card" and payment_method["amount"] < total_price:
        return "Error: gift card balance is not enough"

    reservation = reservations.for_write(reservation_id)
    reservation["total_baggages"] = total_baggages
    reservation["nonfree_baggages"] = nonfree_baggages
    if payment_method["source"] == "gift_card":
        users.for_write(owner)["payment_methods"][payment_id]["amount"] -= total_price
    if total_price != 0:
        reservation["payment_history"].append({"payment_id": payment_id, "amount": total_price})
    return json.dumps(reservation)


def _update_reservation_flights(data: _Data, reservation_id: Any, cabin: Any, flights: Any, payment_id: Any) -> str:
    users, reservations = data.users, data.reservations
    if reservation_id not in reservations:
        return "Error: reservation not found"
    reservation = reservations[reservation_id]

    total_price = 0
    flights = copy.deepcopy(flights)
    for flight in flights:
        # a flight already in the reservation, in the same cabin, keeps its price
        if kept := [
            f
            for f in reservation["flights"]
            if f["flight_number"] == flight["flight_number"]
            and f["date"] == flight["date"]
            and cabin == reservation["cabin"]
        ]:
            total_price += kept[0]["price"] * len(reservation["passengers"])
            flight["price"] = kept[0]["price"]
            flight["origin"] = kept[0]["origin"]
            flight["destination"] = kept[0]["destination"]
            continue
        flight_number = flight["flight_number"]
        if flight_number not in data.flights:
            return f"Error: flight {flight_number} not found"
        flight_data = data.flights[flight_number]
        if flight["date"] not in flight_data["dates"]:
            return f"Error: flight {flight_number} not found on date {flight['date']}"
        flight_date_data = flight_data["dates"][flight["date"]]
        if flight_date_data["status"] != "available":
            return f"Error: flight {flight_number} not available on date {flight['date']}"
        if flight_date_data["available_seats"][cabin] < len(reservation["passengers"]):
            return f"Error: not enough seats on flight {flight_number}"
        flight["price"] = flight_date_data["prices"][cabin]
        flight["origin"] = flight_data["origin"]
        flight["destination"] = flight_data["destination"]
        total_price += flight["price"] * len(reservation["passengers"])

    total_price -= sum(flight["price"] for flight in reservation["flights"]) * len(reservation["passengers"])

    owner = reservation["user_id"]
    if payment_id not in users[owner]["payment_methods"]:
        return "Error: payment method not found"
    payment_method = users[owner]["payment_methods"][payment_id]
    if payment_method["source"] == "certificate":
        return "Error: certificate cannot be used to update reservation"
    elif payment_method["source"] == "gift_card" and payment_method["amount"] < total_price:
        return "Error: gift card balance is not enough"

    if payment_method["source"] == "gift_card":
        users.for_write(owner)["payment_methods"][payment_id]["amount"] -= total_price
    reservation = reservations.for_write(reservation_id)
    reservation["flights"] = flights  # the cabin stays as it was (sic), and no flight's seats change
    if total_price != 0:
        reservation["payment_history"].append({"payment_id": payment_id, "amount": total_price})
    return json.dumps(reservation)


def _update_reservation_passengers(data: _Data, reservation_id: Any, passengers: Any) -> str:
    reservations = data.reservations
    if reservation_id not in reservations:
        return "Error: reservation not found"
    if len(passengers) != len(reservations[reservation_id]["passengers"]):
        return "Error: number of passengers does not match"
    reservation = reservations.for_write(reservation_id)
    reservation["passengers"] = passengers
    return json.dumps(reservation)


_ALL = (
    _book_reservation, _calculate, _cancel_reservation, _get_reservation_details, _get_user_details,
    _list_all_airports, _search_direct_flight, _search_onestop_flight, _send_certificate, _think,
    _transfer_to_human_agents, _update_reservation_baggages, _update_reservation_flights,
    _update_reservation_passengers,
)  # fmt: skip
TOOLS: dict[str, Callable[..., str]] = {tool.__name__.removeprefix("_"): tool for tool in _ALL}
WRITE_TOOLS = frozenset(name for name in TOOLS if name.startswith(("book_", "cancel_", "update_", "send_")))
for _name, _tool in TOOLS.items():
    _tool.__qualname__ = "".join(part.title() for part in _name.split("_")) + ".invoke"


class AirlineWorld:
    """The airline's data as a run's tool calls leave it. Not thread-safe: serialise access."""

    def __init__(self, db_dir: str | os.PathLike[str] | None = None) -> None:
        self.db_dir = Path(db_dir) if db_dir is not None else default_db_dir()
        self._data = _Data(_load(self.db_dir))

    def reset(self) -> None:
        """Back to the database as on disk (drops this world's changed and added records)."""
        for table in (self._data.users, self._data.reservations, self._data.flights):
            table.reset()

    def call(self, tool: str, args: Mapping[str, Any]) -> str:
        """Apply one tool call, as tau-bench's environment does; the tool's answer."""
        function = TOOLS.get(tool)
        if function is None:
            return f"Unknown action {tool}"
        try:
            return function(data=self._data, **copy.deepcopy(dict(args)))
        except Exception as e:
            return f"Error: {e}"

    def user(self, user_id: str) -> Record | None:
        """The user's profile as stored (a copy), or None."""
        return copy.deepcopy(self._data.users[user_id]) if user_id in self._data.users else None

    def reservation(self, reservation_id: str) -> Record | None:
        """The reservation as stored (a copy), or None."""
        if reservation_id not in self._data.reservations:
            return None
        return copy.deepcopy(self._data.reservations[reservation_id])

    def flight(self, flight_number: str) -> Record | None:
        """The flight's route and schedule (its record without ``dates``), or None."""
        if flight_number not in self._data.flights:
            return None
        return {k: copy.deepcopy(v) for k, v in self._data.flights[flight_number].items() if k != "dates"}

    def flight_date(self, flight_number: str, date: str) -> Record | None:
        """What the database holds for the flight on that date (status, and seats and prices per
        cabin when available, actual or estimated times otherwise), or None."""
        if flight_number not in self._data.flights:
            return None
        dates = self._data.flights[flight_number]["dates"]
        return copy.deepcopy(dates[date]) if date in dates else None

    def counts(self) -> dict[str, int]:
        """Records per table, and how many records this world has changed or added since reset."""
        tables = {"users": self._data.users, "reservations": self._data.reservations, "flights": self._data.flights}
        return {
            **{name: len(table) for name, table in tables.items()},
            "changed": sum(t.changed() for t in tables.values()),
        }
