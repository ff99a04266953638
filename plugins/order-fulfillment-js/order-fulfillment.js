// Per-instance process manager `order-fulfillment`, in JavaScript: when
// payment and inventory are both done for an order, ship it, whichever comes
// first.
//
// One instance per order (the stream id of `payment:<order>` and
// `inventory:<order>`, the default). The on handlers record the facts; the
// after handlers decide, so the decision sees every listener's phase-1 work
// for the same event. Shipping completes the instance: the host deletes its
// state. During a refresh the host drops what is dispatched, so history never
// ships twice.
import { complete, dispatch } from 'cascade';

export function initialState() {
  return { paymentReceived: false, inventoryReserved: false };
}

function shipWhenReady(order, event) {
  if (order.paymentReceived && order.inventoryReserved) {
    dispatch('shipping', event.streamId, 'shipOrder', {});
    complete();
  }
}

export function onPaymentSucceeded(order, event, ctx) {
  order.paymentReceived = true;
}

export function onInventoryReserved(order, event, ctx) {
  order.inventoryReserved = true;
}

export function afterPaymentSucceeded(order, event, ctx) {
  shipWhenReady(order, event);
}

export function afterInventoryReserved(order, event, ctx) {
  shipWhenReady(order, event);
}
