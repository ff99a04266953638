"""Stateful process manager `order-fulfillment`, in Python: when payment and
inventory are both done for an order, ship it, whichever comes first.

The on_ handlers record the facts; the after_ handlers decide, so the
decision sees every listener's phase-1 work for the same event. The state is
kept per order id. During a refresh the host drops what is dispatched, so
history never ships twice.
"""

from cascade import dispatch


def initial_state():
    return {"orders": {}}


def _order(state, event):
    return state["orders"].setdefault(event.stream_id, {"paymentReceived": False, "inventoryReserved": False})


def _ship_when_ready(state, event):
    order = _order(state, event)
    if order["paymentReceived"] and order["inventoryReserved"]:
        dispatch("shipping", event.stream_id, "shipOrder", {})


def on_payment_succeeded(state, event, ctx):
    _order(state, event)["paymentReceived"] = True


def on_inventory_reserved(state, event, ctx):
    _order(state, event)["inventoryReserved"] = True


def after_payment_succeeded(state, event, ctx):
    _ship_when_ready(state, event)


def after_inventory_reserved(state, event, ctx):
    _ship_when_ready(state, event)
