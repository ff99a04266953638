"""Per-instance process manager `order-fulfillment`, in Python: when payment
and inventory are both done for an order, ship it, whichever comes first.

One instance per order (the stream id of `payment:<order>` and
`inventory:<order>`, the default). The on_ handlers record the facts; the
after_ handlers decide, so the decision sees every listener's phase-1 work
for the same event. Shipping completes the instance: the host deletes its
state. During a refresh the host drops what is dispatched, so history never
ships twice.
"""

from cascade import complete, dispatch


def initial_state():
    return {"paymentReceived": False, "inventoryReserved": False}


def _ship_when_ready(order, event):
    if order["paymentReceived"] and order["inventoryReserved"]:
        dispatch("shipping", event.stream_id, "shipOrder", {})
        complete()


def on_payment_succeeded(order, event, ctx):
    order["paymentReceived"] = True


def on_inventory_reserved(order, event, ctx):
    order["inventoryReserved"] = True


def after_payment_succeeded(order, event, ctx):
    _ship_when_ready(order, event)


def after_inventory_reserved(order, event, ctx):
    _ship_when_ready(order, event)
