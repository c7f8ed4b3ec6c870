"""The airline domain's tools: look up users, reservations and flights; book, change and cancel reservations;
issue certificates; hand over to a human.

Behaviour follows tau2-bench's airline tools (the same checks in the same order, the same error texts, the same
prices and fees, the same fixed clock 2024-05-15T15:00:00 and new ids HATHAT/HATHAU/HATHAV), so a task's gold
actions change the database here exactly as they do upstream. Upstream's quirks are kept on purpose: cancelling
frees no seats, changing flights does not touch seat counts, and a one-stop search past a flight's "+1" arrival
looks on the next day of May 2024.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from keye_agent.tau.lazydb import peek
from keye_agent.tau.toolkit import Toolkit, env_tool

from ..arithmetic import calculate as _calculate
from .models import (
    AirlineDB,
    AirportCode,
    CabinClass,
    Certificate,
    DirectFlight,
    Flight,
    FlightAvailable,
    FlightDate,
    FlightInfo,
    FlightType,
    GiftCard,
    Insurance,
    Passenger,
    Payment,
    Reservation,
    ReservationFlight,
    User,
)

NOW = "2024-05-15T15:00:00"
NEW_RESERVATION_IDS = ("HATHAT", "HATHAU", "HATHAV")
NEW_CERTIFICATE_IDS = ("certificate_3221322", "certificate_3221323", "certificate_3221324")
INSURANCE_FEE = 30
BAG_FEE = 50
AIRPORTS = (("SFO", "San Francisco"), ("JFK", "New York"), ("LAX", "Los Angeles"), ("ORD", "Chicago"),
            ("DFW", "Dallas"), ("DEN", "Denver"), ("SEA", "Seattle"), ("ATL", "Atlanta"), ("MIA", "Miami"),
            ("BOS", "Boston"), ("PHX", "Phoenix"), ("IAH", "Houston"), ("LAS", "Las Vegas"), ("MCO", "Orlando"),
            ("EWR", "Newark"), ("CLT", "Charlotte"), ("MSP", "Minneapolis"), ("DTW", "Detroit"),
            ("PHL", "Philadelphia"), ("LGA", "LaGuardia"))


def _models(items: list[Any], model: type) -> list[Any]:
    """Arguments arrive as models (through the schema check) or as plain objects (gold actions, replays)."""
    if all(isinstance(x, dict) for x in items):
        return [model.model_validate(x) for x in items]
    return list(items)


class AirlineTools(Toolkit):
    """The agent's tools over an :class:`AirlineDB`."""

    db: AirlineDB
    db_model = AirlineDB

    # ---- lookups -------------------------------------------------------------------------------------------

    def _user(self, user_id: str) -> User:
        if user_id not in self.db.users:
            raise ValueError(f"User {user_id} not found")
        return self.db.users[user_id]

    def _reservation(self, reservation_id: str) -> Reservation:
        if reservation_id not in self.db.reservations:
            raise ValueError(f"Reservation {reservation_id} not found")
        return self.db.reservations[reservation_id]

    def _flight(self, flight_number: str) -> Flight:
        if flight_number not in self.db.flights:
            raise ValueError(f"Flight {flight_number} not found")
        return self.db.flights[flight_number]

    def _flight_on(self, flight_number: str, date: str) -> FlightDate:
        flight = self._flight(flight_number)
        if date not in flight.dates:
            raise ValueError(f"Flight {flight_number} not found on date {date}")
        return flight.dates[date]

    def _bookable(self, flight_number: str, date: str, cabin: str, seats: int) -> FlightAvailable:
        day = self._flight_on(flight_number, date)
        if not isinstance(day, FlightAvailable):
            raise ValueError(f"Flight {flight_number} not available on date {date}")
        if day.available_seats[cabin] < seats:
            raise ValueError(f"Not enough seats on flight {flight_number}")
        return day

    def _direct(self, date: str, origin: str | None, destination: str | None,
                leave_after: str | None = None) -> list[DirectFlight]:
        found = []
        for number in self.db.flights:
            f = peek(self.db.flights, number)  # a scan of every flight: read, never made the environment's own
            day = f["dates"].get(date)
            if (origin is not None and f["origin"] != origin) or (destination is not None
                                                                  and f["destination"] != destination):
                continue
            if day is None or day["status"] != "available":
                continue
            if leave_after is not None and f["scheduled_departure_time_est"] < leave_after:
                continue
            found.append(DirectFlight(flight_number=f["flight_number"], origin=f["origin"],
                                      destination=f["destination"], status="available",
                                      scheduled_departure_time_est=f["scheduled_departure_time_est"],
                                      scheduled_arrival_time_est=f["scheduled_arrival_time_est"],
                                      available_seats=day["available_seats"], prices=day["prices"]))
        return found

    def _charge(self, user: User, payment_id: str, amount: int) -> Payment | None:
        """Take ``amount`` (negative: give it back) from a stored payment method for a change to a reservation;
        certificates cannot pay for changes. The payment record, or None when nothing is due."""
        if payment_id not in user.payment_methods:
            raise ValueError("Payment method not found")
        method = user.payment_methods[payment_id]
        if isinstance(method, Certificate):
            raise ValueError("Certificate cannot be used to update reservation")
        if isinstance(method, GiftCard):
            if method.amount < amount:
                raise ValueError("Gift card balance is not enough")
            method.amount -= amount
        return Payment(payment_id=payment_id, amount=amount) if amount != 0 else None

    @env_tool("read")
    def get_user_details(self, user_id: str) -> User:
        """Look up a user: profile, membership, saved passengers, payment methods and reservation ids.

        Args:
            user_id: The user's id, such as 'sara_doe_496'.
        """
        return self._user(user_id)

    @env_tool("read")
    def get_reservation_details(self, reservation_id: str) -> Reservation:
        """Look up a reservation: its flights, passengers, cabin, baggage, insurance and payments.

        Args:
            reservation_id: The six-character reservation code, such as '8JX2WO'.
        """
        return self._reservation(reservation_id)

    @env_tool("read")
    def list_all_airports(self) -> list[AirportCode]:
        """List every airport served, with its IATA code and city."""
        return [AirportCode(iata=code, city=city) for code, city in AIRPORTS]

    @env_tool("read")
    def search_direct_flight(self, origin: str, destination: str, date: str) -> list[DirectFlight]:
        """Find the non-stop flights between two airports that can still be booked on a date, with their seats
        left and prices per cabin.

        Args:
            origin: IATA code of the departure airport, such as 'JFK'.
            destination: IATA code of the arrival airport, such as 'LAX'.
            date: The travel date, 'YYYY-MM-DD', such as '2024-05-01'.
        """
        return self._direct(date, origin, destination)

    @env_tool("read")
    def search_onestop_flight(self, origin: str, destination: str, date: str) -> list[list[DirectFlight]]:
        """Find connections with one stop between two airports on a date: pairs of bookable flights where the
        second leaves the stop after the first lands.

        Args:
            origin: IATA code of the departure airport, such as 'JFK'.
            destination: IATA code of the final arrival airport, such as 'LAX'.
            date: The date of the first flight, 'YYYY-MM-DD', such as '2024-05-01'.
        """
        pairs = []
        for first in self._direct(date, origin, None):
            first.date = date
            # as upstream: an arrival marked "+1" moves the second leg to the next day of May 2024
            date2 = f"2024-05-{int(date[-2:]) + 1}" if "+1" in first.scheduled_arrival_time_est else date
            for second in self._direct(date2, first.destination, destination, first.scheduled_arrival_time_est):
                second.date = date2
                pairs.append([first, second])
        return pairs

    @env_tool("read")
    def get_flight_status(self, flight_number: str, date: str) -> str:
        """The status of a flight on a date: available, on time, delayed, flying, landed or cancelled.

        Args:
            flight_number: The flight number, such as 'HAT001'.
            date: The flight's date, 'YYYY-MM-DD'.
        """
        return self._flight_on(flight_number, date).status

    # ---- changes -------------------------------------------------------------------------------------------

    @env_tool("write")
    def book_reservation(self, user_id: str, origin: str, destination: str, flight_type: FlightType,
                         cabin: CabinClass, flights: list[FlightInfo], passengers: list[Passenger],
                         payment_methods: list[Payment], total_baggages: int, nonfree_baggages: int,
                         insurance: Insurance) -> Reservation:
        """Book a new reservation for a user and charge it. The payments must add up to the total: each flight's
        cabin price per passenger, plus $30 per passenger for insurance, plus $50 per non-free bag.

        Args:
            user_id: The id of the user booking, such as 'sara_doe_496'.
            origin: IATA code of the trip's origin, such as 'SFO'.
            destination: IATA code of the trip's destination, such as 'JFK'.
            flight_type: 'one_way' or 'round_trip'.
            cabin: 'basic_economy', 'economy' or 'business' (the same for every flight).
            flights: Every flight of the trip, each with its flight number and date.
            passengers: Every passenger, each with first name, last name and date of birth.
            payment_methods: How to pay: payment method ids from the user's profile, each with the amount charged.
            total_baggages: The number of checked bags in all.
            nonfree_baggages: How many of those bags are paid for.
            insurance: 'yes' or 'no': travel insurance for every passenger.
        """
        flights = _models(flights, FlightInfo)
        passengers = _models(passengers, Passenger)
        payment_methods = _models(payment_methods, Payment)
        user = self._user(user_id)
        reservation_id = next((r for r in NEW_RESERVATION_IDS if r not in self.db.reservations), None)
        if reservation_id is None:
            raise ValueError("Too many reservations")
        reservation = Reservation(
            reservation_id=reservation_id, user_id=user_id, origin=origin, destination=destination,
            flight_type=flight_type, cabin=cabin, flights=[], passengers=deepcopy(passengers),
            payment_history=deepcopy(payment_methods), created_at=NOW, total_baggages=total_baggages,
            nonfree_baggages=nonfree_baggages, insurance=insurance)
        booked = reservation.flights
        days: list[FlightAvailable] = []
        total = 0
        for info in flights:
            flight = self._flight(info.flight_number)
            day = self._bookable(info.flight_number, info.date, cabin, len(passengers))
            price = day.prices[cabin]
            booked.append(ReservationFlight(flight_number=info.flight_number, origin=flight.origin,
                                            destination=flight.destination, date=info.date, price=price))
            days.append(day)
            total += price * len(passengers)
        if insurance == "yes":
            total += INSURANCE_FEE * len(passengers)
        total += BAG_FEE * nonfree_baggages
        for p in payment_methods:
            if p.payment_id not in user.payment_methods:
                raise ValueError(f"Payment method {p.payment_id} not found")
            method = user.payment_methods[p.payment_id]
            if isinstance(method, GiftCard | Certificate) and method.amount < p.amount:
                raise ValueError(f"Not enough balance in payment method {p.payment_id}")
        paid = sum(p.amount for p in payment_methods)
        if paid != total:
            raise ValueError(f"Payment amount does not add up, total price is {total}, but paid {paid}")
        for p in payment_methods:
            method = user.payment_methods[p.payment_id]
            if isinstance(method, GiftCard):
                method.amount -= p.amount
            elif isinstance(method, Certificate):
                del user.payment_methods[p.payment_id]  # a certificate is used up whatever is left on it
        for day in days:
            day.available_seats[cabin] -= len(passengers)
        self.db.reservations[reservation_id] = reservation
        user.reservations.append(reservation_id)
        return reservation

    @env_tool("write")
    def cancel_reservation(self, reservation_id: str) -> Reservation:
        """Cancel a whole reservation: every payment made for it is refunded to where it came from.

        Args:
            reservation_id: The reservation code, such as 'ZFA04Y'.
        """
        reservation = self._reservation(reservation_id)
        refunds = [Payment(payment_id=p.payment_id, amount=-p.amount) for p in reservation.payment_history]
        reservation.payment_history.extend(refunds)
        reservation.status = "cancelled"
        return reservation

    @env_tool("write")
    def update_reservation_baggages(self, reservation_id: str, total_baggages: int, nonfree_baggages: int,
                                    payment_id: str) -> Reservation:
        """Change the number of checked bags of a reservation; each added non-free bag costs $50.

        Args:
            reservation_id: The reservation code, such as 'ZFA04Y'.
            total_baggages: The new total number of checked bags.
            nonfree_baggages: The new number of paid bags.
            payment_id: A payment method id from the user's profile, such as 'credit_card_7815826' or
                'gift_card_7815826' (certificates cannot pay for changes).
        """
        reservation = self._reservation(reservation_id)
        user = self._user(reservation.user_id)
        payment = self._charge(user, payment_id, BAG_FEE * max(0, nonfree_baggages - reservation.nonfree_baggages))
        if payment is not None:
            reservation.payment_history.append(payment)
        reservation.total_baggages = total_baggages
        reservation.nonfree_baggages = nonfree_baggages
        return reservation

    @env_tool("write")
    def update_reservation_flights(self, reservation_id: str, cabin: CabinClass, flights: list[FlightInfo],
                                   payment_id: str) -> Reservation:
        """Change the flights or the cabin of a reservation and settle the price difference. ``flights`` is the
        whole new itinerary: list every flight the reservation should have, unchanged ones included.

        Args:
            reservation_id: The reservation code, such as 'ZFA04Y'.
            cabin: The cabin for the whole reservation: 'basic_economy', 'economy' or 'business'.
            flights: Every flight of the new itinerary, each with its flight number and date.
            payment_id: A payment method id from the user's profile to pay or be refunded the difference, such as
                'credit_card_7815826' or 'gift_card_7815826' (certificates cannot pay for changes).
        """
        flights = _models(flights, FlightInfo)
        reservation = self._reservation(reservation_id)
        user = self._user(reservation.user_id)
        seats = len(reservation.passengers)
        new_flights: list[ReservationFlight] = []
        total = 0
        for info in flights:
            kept = next((f for f in reservation.flights if f.flight_number == info.flight_number
                         and f.date == info.date and cabin == reservation.cabin), None)
            if kept is not None:  # same flight, same cabin: it keeps the price paid
                new_flights.append(kept)
                total += kept.price * seats
                continue
            flight = self._flight(info.flight_number)
            day = self._bookable(info.flight_number, info.date, cabin, seats)
            new_flights.append(ReservationFlight(flight_number=info.flight_number, origin=flight.origin,
                                                 destination=flight.destination, date=info.date,
                                                 price=day.prices[cabin]))
            total += day.prices[cabin] * seats
        total -= sum(f.price for f in reservation.flights) * seats
        payment = self._charge(user, payment_id, total)
        if payment is not None:
            reservation.payment_history.append(payment)
        reservation.flights = new_flights
        reservation.cabin = cabin
        return reservation

    @env_tool("write")
    def update_reservation_passengers(self, reservation_id: str, passengers: list[Passenger]) -> Reservation:
        """Replace the passengers' details of a reservation; the number of passengers cannot change.

        Args:
            reservation_id: The reservation code, such as 'ZFA04Y'.
            passengers: Every passenger, in order, each with first name, last name and date of birth.
        """
        passengers = _models(passengers, Passenger)
        reservation = self._reservation(reservation_id)
        if len(passengers) != len(reservation.passengers):
            raise ValueError("Number of passengers does not match")
        reservation.passengers = deepcopy(passengers)
        return reservation

    @env_tool("write")
    def send_certificate(self, user_id: str, amount: int) -> str:
        """Give a user a travel certificate worth ``amount`` dollars (a compensation: follow the policy).

        Args:
            user_id: The id of the user, such as 'sara_doe_496'.
            amount: The certificate's value in dollars.
        """
        user = self._user(user_id)
        for cid in NEW_CERTIFICATE_IDS:
            if cid not in user.payment_methods:
                user.payment_methods[cid] = Certificate(id=cid, amount=amount, source="certificate")
                return f"Certificate {cid} added to user {user_id} with amount {amount}."
        raise ValueError("Too many certificates")

    # ---- generic -------------------------------------------------------------------------------------------

    @env_tool("generic")
    def calculate(self, expression: str) -> str:
        """Evaluate an arithmetic expression and return the result rounded to two decimals.

        Args:
            expression: Numbers with + - * / and parentheses, such as '(250 + 30) * 2'.
        """
        return _calculate(expression)

    @env_tool("generic")
    def transfer_to_human_agents(self, summary: str) -> str:
        """Hand the conversation to a human agent. Do this only when the user asks for a human, or when the policy
        and the tools leave no way to solve the user's issue.

        Args:
            summary: A short summary of the user's issue for the human agent.
        """
        return "Transfer successful"
