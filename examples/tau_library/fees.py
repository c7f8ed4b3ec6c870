"""Python bodies of tools.yaml (``python: fees.py:FUNCTION``): what steps cannot say, here date arithmetic.
Each gets the database and the call's arguments; raising refuses the call with that message."""

from datetime import date


def late_fee(db, member_id, book_id):
    loan = db["members"].get(member_id, {}).get("loans", {}).get(book_id)
    if loan is None:
        raise ValueError(f"Member {member_id} has no loan of book {book_id}")
    days_late = max(0, (date.fromisoformat(db["today"]) - date.fromisoformat(loan["due"])).days)
    return {"days_late": days_late, "fee": 0.5 * days_late}
