// Stateful process manager `order-fulfillment`, in JavaScript: when payment
// and inventory are both done for an order, ship it, whichever comes first.
//
// The on handlers record the facts; the after handlers decide, so the
// decision sees every listener's phase-1 work for the same event. During a
// refresh the host drops what is dispatched, so history never ships twice.
import { dispatch } from 'cascade';

export function initialState() {
  return { orders: {} };
}

function order(state, event) {
  state.orders[event.streamId] ??= { paymentReceived: false, inventoryReserved: false };
  return state.orders[event.streamId];
}

function shipWhenReady(state, event) {
  const o = order(state, event);
  if (o.paymentReceived && o.inventoryReserved) {
    dispatch('shipping', event.streamId, 'shipOrder', {});
  }
}

export function onPaymentSucceeded(state, event, ctx) {
  order(state, event).paymentReceived = true;
}

export function onInventoryReserved(state, event, ctx) {
  order(state, event).inventoryReserved = true;
}

export function afterPaymentSucceeded(state, event, ctx) {
  shipWhenReady(state, event);
}

export function afterInventoryReserved(state, event, ctx) {
  shipWhenReady(state, event);
}
