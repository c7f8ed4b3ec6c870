"""The retail domain's tools: find users, look up orders, products and items; cancel or modify pending orders;
return or exchange delivered items; change a user's address; hand over to a human.

Behaviour follows tau2-bench's retail tools (the same checks in the same order, the same error texts, the same
rounding), so a task's gold actions change the database here exactly as they do upstream. Upstream's quirks are
kept on purpose: modifying several items of a pending order gives every modified item the price and options of
the last new item, and a cancellation that fails on a missing payment method keeps the gift-card refunds made
before it.
"""

from __future__ import annotations

import json

from keye_agent.tau.lazydb import peek
from keye_agent.tau.toolkit import Toolkit, env_tool

from ..arithmetic import calculate as _calculate
from .models import GiftCard, Order, OrderPayment, PaymentMethod, Product, RetailDB, User, UserAddress, Variant

_ORDER_ID = "The order id, such as '#W0000000' (mind the '#' at the start)."


class RetailTools(Toolkit):
    """The agent's tools over a :class:`RetailDB`."""

    db: RetailDB
    db_model = RetailDB

    # ---- lookups -------------------------------------------------------------------------------------------

    def _order(self, order_id: str) -> Order:
        if order_id not in self.db.orders:
            raise ValueError("Order not found")
        return self.db.orders[order_id]

    def _user(self, user_id: str) -> User:
        if user_id not in self.db.users:
            raise ValueError("User not found")
        return self.db.users[user_id]

    def _product(self, product_id: str) -> Product:
        if product_id not in self.db.products:
            raise ValueError("Product not found")
        return self.db.products[product_id]

    def _variant(self, product_id: str, item_id: str) -> Variant:
        product = self._product(product_id)
        if item_id not in product.variants:
            raise ValueError("Variant not found")
        return product.variants[item_id]

    def _payment_method(self, user_id: str, payment_method_id: str) -> PaymentMethod:
        user = self._user(user_id)
        if payment_method_id not in user.payment_methods:
            raise ValueError("Payment method not found")
        return user.payment_methods[payment_method_id]

    @staticmethod
    def _have_items(order: Order, item_ids: list[str], error: str) -> None:
        """Every id of ``item_ids`` (duplicates counted) is among the order's items; else ``error``."""
        in_order = [i.item_id for i in order.items]
        for item_id in item_ids:
            if item_ids.count(item_id) > in_order.count(item_id):
                raise ValueError(error.format(item_id=item_id))

    @env_tool("read")
    def find_user_id_by_email(self, email: str) -> str:
        """Find a user's id from their email address (case does not matter).

        Args:
            email: The user's email, such as 'something@example.com'.
        """
        for user_id in self.db.users:
            if peek(self.db.users, user_id)["email"].lower() == email.lower():
                return user_id
        raise ValueError("User not found")

    @env_tool("read")
    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """Find a user's id from their first and last name and zip code. Look users up by email first; use this
        when the email is not found or the user does not remember it.

        Args:
            first_name: The user's first name, such as 'John'.
            last_name: The user's last name, such as 'Doe'.
            zip: The zip code of the user's address, such as '12345'.
        """
        for user_id in self.db.users:
            u = peek(self.db.users, user_id)
            if (u["name"]["first_name"].lower() == first_name.lower()
                    and u["name"]["last_name"].lower() == last_name.lower() and u["address"]["zip"] == zip):
                return user_id
        raise ValueError("User not found")

    @env_tool("read")
    def get_user_details(self, user_id: str) -> User:
        """Look up a user: name, address, email, payment methods and order ids.

        Args:
            user_id: The user's id, such as 'sara_doe_496'.
        """
        return self._user(user_id)

    @env_tool("read")
    def get_order_details(self, order_id: str) -> Order:
        """Look up an order: its status, items, address, fulfilments and payments.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
        """
        return self._order(order_id)

    @env_tool("read")
    def get_product_details(self, product_id: str) -> Product:
        """Look up a product type and every item (variant) of it: options, availability, price.

        Args:
            product_id: The product's id, such as '6086499569' (not an item id).
        """
        return self._product(product_id)

    @env_tool("read")
    def get_item_details(self, item_id: str) -> Variant:
        """Look up one item (a variant of a product): options, availability, price.

        Args:
            item_id: The item's id, such as '1008292230' (not a product id).
        """
        for product_id in self.db.products:
            variants = peek(self.db.products, product_id)["variants"]
            if item_id in variants:
                return Variant.model_validate(variants[item_id])
        raise ValueError("Item not found")

    @env_tool("read")
    def list_all_product_types(self) -> str:
        """List every product type's name and product id (there are 50), as a JSON object sorted by name."""
        names = {}
        for product_id in self.db.products:
            p = peek(self.db.products, product_id)
            names[p["name"]] = p["product_id"]
        return json.dumps(names, sort_keys=True)

    # ---- pending orders ------------------------------------------------------------------------------------

    @env_tool("write")
    def cancel_pending_order(self, order_id: str, reason: str) -> Order:
        """Cancel a pending order (not one already processed or delivered) and refund it: at once to a gift card,
        in 5-7 business days to other payment methods. Explain the details and get the user's explicit
        confirmation (yes) first.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
            reason: Why: 'no longer needed' or 'ordered by mistake'.
        """
        order = self._order(order_id)
        if order.status != "pending":
            raise ValueError("Non-pending order cannot be cancelled")
        if reason not in ("no longer needed", "ordered by mistake"):
            raise ValueError("Invalid reason")
        refunds = []
        for payment in order.payment_history:
            refunds.append(OrderPayment(transaction_type="refund", amount=payment.amount,
                                        payment_method_id=payment.payment_method_id))
            method = self._payment_method(self._user(order.user_id).user_id, payment.payment_method_id)
            if isinstance(method, GiftCard):
                method.balance = round(method.balance + payment.amount, 2)
        order.status = "cancelled"
        order.cancel_reason = reason  # type: ignore[assignment] - checked above
        order.payment_history.extend(refunds)
        return order

    @env_tool("write")
    def modify_pending_order_address(self, order_id: str, address1: str, address2: str, city: str, state: str,
                                     country: str, zip: str) -> Order:
        """Change the shipping address of a pending order. Explain the change and get the user's explicit
        confirmation (yes) first.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
            address1: First address line, such as '123 Main St'.
            address2: Second address line, such as 'Apt 1', or ''.
            city: City, such as 'San Francisco'.
            state: State, such as 'CA'.
            country: Country, such as 'USA'.
            zip: Zip code, such as '12345'.
        """
        order = self._order(order_id)
        if "pending" not in order.status:
            raise ValueError("Non-pending order cannot be modified")
        order.address = UserAddress(address1=address1, address2=address2, city=city, state=state, country=country,
                                    zip=zip)
        return order

    @env_tool("write")
    def modify_pending_order_items(self, order_id: str, item_ids: list[str], new_item_ids: list[str],
                                   payment_method_id: str) -> Order:
        """Swap items of a pending order for other items of the same product (another size, colour...) and settle
        the price difference. This can be done once per order, so gather every swap first; explain them and get
        the user's explicit confirmation (yes) first.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
            item_ids: The ids of the items to swap, such as ['1008292230'] (repeat an id to swap several).
            new_item_ids: The new items' ids, in the same order: each of the same product as the item it replaces.
            payment_method_id: The payment method that pays or receives the difference, such as
                'gift_card_0000000' or 'credit_card_0000000' (from the user's or the order's details).
        """
        order = self._order(order_id)
        if order.status != "pending":
            raise ValueError("Non-pending order cannot be modified")
        self._have_items(order, item_ids, "{item_id} not found")
        if len(item_ids) != len(new_item_ids):
            raise ValueError("The number of items to be exchanged should match")
        diff: float = 0
        variant = None
        for item_id, new_id in zip(item_ids, new_item_ids, strict=True):
            if item_id == new_id:
                raise ValueError("The new item id should be different from the old item id")
            item = next((i for i in order.items if i.item_id == item_id), None)
            if item is None:
                raise ValueError(f"Item {item_id} not found")
            variant = self._variant(item.product_id, new_id)
            if not variant.available:
                raise ValueError(f"New item {new_id} not found or available")
            diff += variant.price - item.price
        method = self._payment_method(order.user_id, payment_method_id)
        if isinstance(method, GiftCard) and method.balance < diff:
            raise ValueError("Insufficient gift card balance to pay for the new item")
        order.payment_history.append(OrderPayment(transaction_type="payment" if diff > 0 else "refund",
                                                  amount=abs(diff), payment_method_id=payment_method_id))
        if isinstance(method, GiftCard):
            method.balance = round(method.balance - diff, 2)
        for item_id, new_id in zip(item_ids, new_item_ids, strict=True):
            item = next((i for i in order.items if i.item_id == item_id), None)
            if item is None:
                raise ValueError(f"Item {item_id} not found")
            assert variant is not None
            # as upstream: price and options come from the last new item, whichever item this is
            item.item_id, item.price, item.options = new_id, variant.price, dict(variant.options)
        order.status = "pending (item modified)"
        return order

    @env_tool("write")
    def modify_pending_order_payment(self, order_id: str, payment_method_id: str) -> Order:
        """Pay a pending order with another payment method: the new one is charged and the old one refunded.
        Explain the change and get the user's explicit confirmation (yes) first.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
            payment_method_id: The new payment method, such as 'gift_card_0000000' or 'credit_card_0000000'.
        """
        order = self._order(order_id)
        if "pending" not in order.status:
            raise ValueError("Non-pending order cannot be modified")
        method = self._payment_method(order.user_id, payment_method_id)
        history = order.payment_history
        if len(history) != 1 or history[0].transaction_type != "payment":
            raise ValueError("There should be exactly one payment for a pending order")
        old_id = history[0].payment_method_id
        if old_id == payment_method_id:
            raise ValueError("The new payment method should be different from the current one")
        amount = history[0].amount
        if isinstance(method, GiftCard) and method.balance < amount:
            raise ValueError("Insufficient gift card balance to pay for the order")
        history.extend([OrderPayment(transaction_type="payment", amount=amount, payment_method_id=payment_method_id),
                        OrderPayment(transaction_type="refund", amount=amount, payment_method_id=old_id)])
        if isinstance(method, GiftCard):
            method.balance = round(method.balance - amount, 2)
        old = self._payment_method(order.user_id, old_id)
        if isinstance(old, GiftCard):
            old.balance = round(old.balance + amount, 2)
        return order

    # ---- delivered orders ----------------------------------------------------------------------------------

    @env_tool("write")
    def exchange_delivered_order_items(self, order_id: str, item_ids: list[str], new_item_ids: list[str],
                                       payment_method_id: str) -> Order:
        """Ask to exchange items of a delivered order for other items of the same product; the price difference
        is paid or refunded. A delivered order can be returned or exchanged only once, so gather every exchange
        first; explain them and get the user's explicit confirmation (yes) first.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
            item_ids: The ids of the items to exchange, such as ['1008292230'] (repeat an id for several).
            new_item_ids: The new items' ids, in the same order: each of the same product as the item it replaces.
            payment_method_id: The payment method that pays or receives the difference, such as
                'gift_card_0000000' or 'credit_card_0000000' (from the user's or the order's details).
        """
        order = self._order(order_id)
        if order.status != "delivered":
            raise ValueError("Non-delivered order cannot be exchanged")
        self._have_items(order, item_ids, "Number of {item_id} not found.")
        if len(item_ids) != len(new_item_ids):
            raise ValueError("The number of items to be exchanged should match.")
        diff: float = 0  # an int while nothing is added, as upstream (so an empty exchange records 0, not 0.0)
        for item_id, new_id in zip(item_ids, new_item_ids, strict=True):
            item = next((i for i in order.items if i.item_id == item_id), None)
            if item is None:
                raise ValueError(f"Item {item_id} not found")
            variant = self._variant(item.product_id, new_id)
            if not variant.available:
                raise ValueError(f"New item {new_id} not found or available")
            diff += variant.price - item.price
        diff = round(diff, 2)
        method = self._payment_method(order.user_id, payment_method_id)
        if isinstance(method, GiftCard) and method.balance < diff:
            raise ValueError("Insufficient gift card balance to pay for the price difference")
        order.status = "exchange requested"
        order.exchange_items = sorted(item_ids)
        order.exchange_new_items = sorted(new_item_ids)
        order.exchange_payment_method_id = payment_method_id
        order.exchange_price_difference = diff
        return order

    @env_tool("write")
    def return_delivered_order_items(self, order_id: str, item_ids: list[str], payment_method_id: str) -> Order:
        """Ask to return items of a delivered order; the refund goes to the original payment method or a gift
        card, and the user gets an email on how to send the items back. Explain the details and get the user's
        explicit confirmation (yes) first.

        Args:
            order_id: The order id, such as '#W0000000' (mind the '#' at the start).
            item_ids: The ids of the items to return, such as ['1008292230'] (repeat an id for several).
            payment_method_id: Where the refund goes: the order's original payment method or a gift card, such as
                'gift_card_0000000' or 'credit_card_0000000'.
        """
        order = self._order(order_id)
        if order.status != "delivered":
            raise ValueError("Non-delivered order cannot be returned")
        user = self._user(order.user_id)
        method = self._payment_method(user.user_id, payment_method_id)
        if not isinstance(method, GiftCard) and payment_method_id != order.payment_history[0].payment_method_id:
            raise ValueError("Payment method should be the original payment method")
        self._have_items(order, item_ids, "Some item not found")
        order.status = "return requested"
        order.return_items = sorted(item_ids)
        order.return_payment_method_id = payment_method_id
        return order

    # ---- users and generic ---------------------------------------------------------------------------------

    @env_tool("write")
    def modify_user_address(self, user_id: str, address1: str, address2: str, city: str, state: str,
                            country: str, zip: str) -> User:
        """Change a user's default address. Explain the change and get the user's explicit confirmation (yes)
        first.

        Args:
            user_id: The user's id, such as 'sara_doe_496'.
            address1: First address line, such as '123 Main St'.
            address2: Second address line, such as 'Apt 1', or ''.
            city: City, such as 'San Francisco'.
            state: State, such as 'CA'.
            country: Country, such as 'USA'.
            zip: Zip code, such as '12345'.
        """
        user = self._user(user_id)
        user.address = UserAddress(address1=address1, address2=address2, city=city, state=state, country=country,
                                   zip=zip)
        return user

    @env_tool("generic")
    def calculate(self, expression: str) -> str:
        """Evaluate an arithmetic expression and return the result rounded to two decimals.

        Args:
            expression: Numbers with + - * / and parentheses, such as '(19.99 + 5.01) * 2'.
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
