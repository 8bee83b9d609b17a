// A client-side order book kept from the feed's `orderbook.{PAIR}.{DEPTH}` channel.
//
// docs/websocket-api.md: a snapshot tagged with `seq`, then diffs whose `first_seq` is the
// previous message's `seq` + 1, with absolute level sizes ("0" deletes the level). A diff
// that does not chain means a message was missed: `apply` answers "gap" and the caller
// resubscribes to get a fresh snapshot.

import { compareDecimal, isZero } from "./format.js";

export class Book {
  constructor() {
    this.clear();
  }

  clear() {
    this.bids = new Map();
    this.asks = new Map();
    this.seq = null;
  }

  /** Apply one data message of the channel; return "snapshot", "diff" or "gap". */
  apply(message) {
    if (message.type === "snapshot") {
      this.bids = new Map(message.data.bids);
      this.asks = new Map(message.data.asks);
      this.seq = message.seq;
      return "snapshot";
    }
    if (this.seq === null || message.first_seq !== this.seq + 1) {
      return "gap";
    }
    for (const [side, levels] of [[this.bids, message.data.bids], [this.asks, message.data.asks]]) {
      for (const [price, size] of levels) {
        if (isZero(size)) side.delete(price);
        else side.set(price, size);
      }
    }
    this.seq = message.seq;
    return "diff";
  }

  /** The side's levels as [price, size] pairs, best first (bids high to low, asks low to high). */
  levels(side) {
    const levels = [...(side === "bids" ? this.bids : this.asks)];
    const direction = side === "bids" ? -1 : 1;
    levels.sort((a, b) => direction * compareDecimal(a[0], b[0]));
    return levels;
  }
}
