// The signed-in part of the page: API key form, order ticket, open orders, fills, balances.
//
// The key and secret are kept in sessionStorage (this tab only, gone when it closes) and
// used only to sign requests here; the secret never leaves the browser. Open orders, fills
// and balances come from REST, then follow the feed's private channels: subscribe first,
// then fetch, then apply the events that arrive (docs/websocket-api.md).

import { ApiError, Credentials, canSign } from "./api.js";
import { clockTime } from "./format.js";

const STORAGE_KEY = "zmx.credentials";
const OPEN_STATUSES = new Set(["NEW", "PARTIALLY_FILLED"]);
const FILLS_SHOWN = 50;
const BALANCE_REFRESH_MS = 250;

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function show(element, text, isError) {
  element.textContent = text;
  element.classList.toggle("error", Boolean(isError));
}

export class Account {
  constructor(feed, elements) {
    this.feed = feed;
    this.elements = elements;
    this.credentials = null;
    this.market = null;
    this.side = "buy";
    this.orders = new Map();
    this.closed = new Set();
    this.fills = new Map();
    this.buffers = new Set();  // per reload in progress: the events that arrive meanwhile
    this.balanceTimer = null;
    this.bind();
  }

  bind() {
    const e = this.elements;
    e.keyForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(e.apiKey.value.trim(), e.apiSecret.value.trim());
    });
    e.forget.addEventListener("click", () => this.signOut());
    for (const button of e.sides) {
      button.addEventListener("click", () => this.setSide(button.dataset.side));
    }
    e.type.addEventListener("change", () => { e.price.disabled = e.type.value === "market"; });
    e.ticket.addEventListener("submit", (event) => {
      event.preventDefault();
      this.place();
    });
    e.cancelAll.addEventListener("click", () => this.cancelAll());
  }

  /** Sign in again with the key this tab used before, if any. */
  restore() {
    const saved = sessionStorage.getItem(STORAGE_KEY);
    if (!saved) return;
    const { apiKey, apiSecret } = JSON.parse(saved);
    this.signIn(apiKey, apiSecret);
  }

  async signIn(apiKey, apiSecret) {
    const e = this.elements;
    if (!canSign()) {
      show(e.keyMessage, "Signing needs a secure context: open this page over HTTPS, or at http://localhost / "
        + "http://127.0.0.1 on the gateway's machine.", true);
      return;
    }
    show(e.keyMessage, "Checking the key…");
    try {
      const credentials = await Credentials.create(apiKey, apiSecret);
      const profile = await credentials.request("GET", "/api/v1/account");
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ apiKey, apiSecret }));
      this.credentials = credentials;
      e.apiSecret.value = "";
      show(e.keyMessage, "");
      e.whoami.textContent = `Signed in as ${profile.username} (trader ${profile.trader_id}, key ${profile.api_key_prefix}…)`;
      e.keyForm.hidden = true;
      e.account.hidden = false;
      // The feed calls reload() again once the private channels are subscribed.
      await this.feed.signIn(credentials, {
        orders: (message) => this.onEvent(message),
        fills: (message) => this.onEvent(message),
        balances: () => this.scheduleBalances(),
      });
      this.reload();
    } catch (error) {
      sessionStorage.removeItem(STORAGE_KEY);
      show(e.keyMessage, error instanceof ApiError ? error.toString() : `Cannot use this key: ${error.message}`, true);
    }
  }

  signOut() {
    sessionStorage.removeItem(STORAGE_KEY);
    this.credentials = null;
    this.feed.signOut();
    this.orders.clear();
    this.closed.clear();
    this.fills.clear();
    const e = this.elements;
    e.account.hidden = true;
    e.keyForm.hidden = false;
    e.apiKey.value = "";
    e.apiSecret.value = "";
  }

  /** Follow another market: the ticket, open orders and fills are the market's own. */
  setMarket(market) {
    this.market = market;
    this.orders.clear();
    this.closed.clear();
    this.fills.clear();
    const e = this.elements;
    e.price.placeholder = `step ${market.tick_size}`;
    e.quantity.placeholder = `step ${market.lot_size}`;
    this.setSide(this.side);
    this.render();
    if (this.credentials) this.reload();
  }

  setPrice(price) {
    this.elements.price.value = price;
  }

  setSide(side) {
    this.side = side;
    const e = this.elements;
    for (const button of e.sides) button.setAttribute("aria-pressed", String(button.dataset.side === side));
    const base = this.market ? ` ${this.market.base}` : "";
    e.place.textContent = `${side === "buy" ? "Buy" : "Sell"}${base}`;
    e.place.className = side;
  }

  /** Fetch open orders, fills and balances; events that arrive meanwhile are applied again after. */
  async reload() {
    const { credentials, market } = this;
    if (!credentials || !market) return;
    const pair = market.pair;
    const buffer = [];
    this.buffers.add(buffer);
    try {
      const [open, fills] = await Promise.all([
        credentials.request("GET", `/api/v1/account/orders?status=open&pair=${pair}`),
        credentials.request("GET", `/api/v1/account/trades?pair=${pair}&limit=${FILLS_SHOWN}`),
        this.refreshBalances(),
      ]);
      if (this.credentials !== credentials || this.market !== market) return;  // signed out or moved on
      this.orders = new Map(open.items.filter((order) => !this.closed.has(order.order_id))
        .map((order) => [order.order_id, order]));
      for (const fill of fills.items) this.fills.set(`${fill.trade_id}:${fill.order_id}`, fill);
      for (const message of buffer) this.apply(message);  // events are absolute: applying twice is harmless
      this.render();
    } catch (error) {
      show(this.elements.orderMessage, `Cannot load the account: ${error}`, true);
    } finally {
      this.buffers.delete(buffer);
    }
  }

  onEvent(message) {
    for (const buffer of this.buffers) buffer.push(message);
    this.apply(message);
    this.render();
  }

  apply(message) {
    if (message.channel === "orders") {
      for (const order of message.data) this.upsertOrder(order);
    } else {
      for (const fill of message.data) {
        if (this.market && fill.pair === this.market.pair) {
          this.fills.set(`${fill.trade_id}:${fill.order_id}`, { ...fill, ts: message.ts });
        }
      }
    }
  }

  /** Keep an order's newest state; a closed order never comes back. */
  upsertOrder(order) {
    if (!this.market || order.pair !== this.market.pair || this.closed.has(order.order_id)) return;
    if (!OPEN_STATUSES.has(order.status)) {
      this.closed.add(order.order_id);
      this.orders.delete(order.order_id);
      return;
    }
    const known = this.orders.get(order.order_id);
    if (!known || order.updated_at >= known.updated_at) this.orders.set(order.order_id, order);
  }

  scheduleBalances() {
    clearTimeout(this.balanceTimer);
    this.balanceTimer = setTimeout(() => {
      this.refreshBalances().catch((error) => show(this.elements.orderMessage, `Cannot load balances: ${error}`, true));
    }, BALANCE_REFRESH_MS);
  }

  /** Balances come from REST: it sums every matcher shard, which one shard's event cannot. */
  async refreshBalances() {
    if (!this.credentials) return;
    const balances = await this.credentials.request("GET", "/api/v1/account/balances");
    const market = this.market;
    if (!market) return;
    const shown = balances.items.filter((balance) => balance.asset === market.base || balance.asset === market.quote);
    this.elements.balances.textContent = shown.length
      ? shown.map((balance) => `${balance.asset} ${balance.available} available, ${balance.locked} locked`).join(" · ")
      : `No ${market.base} or ${market.quote} yet: an admin deposits them.`;
  }

  async place() {
    const e = this.elements;
    if (!this.market) {
      show(e.orderMessage, "No market selected.", true);
      return;
    }
    const body = { pair: this.market.pair, side: this.side, type: e.type.value, quantity: e.quantity.value.trim() };
    if (body.type === "limit") body.price = e.price.value.trim();
    show(e.orderMessage, "Sending…");
    try {
      const order = await this.credentials.request("POST", "/api/v1/account/orders", body);
      this.upsertOrder(order);
      for (const fill of order.fills) this.fills.set(`${fill.trade_id}:${fill.order_id}`, { ...fill, ts: order.updated_at });
      const filled = order.fills.length ? `, ${order.filled_quantity} filled` : "";
      show(e.orderMessage, `Order ${order.order_id}: ${order.status}${filled}`);
      this.render();
    } catch (error) {
      show(e.orderMessage, error.toString(), true);
    }
  }

  async cancel(orderId) {
    try {
      this.upsertOrder(await this.credentials.request("DELETE", `/api/v1/account/orders/${orderId}`));
      show(this.elements.orderMessage, `Order ${orderId} canceled`);
      this.render();
    } catch (error) {
      show(this.elements.orderMessage, error.toString(), true);
    }
  }

  async cancelAll() {
    try {
      const { canceled } = await this.credentials.request("POST", "/api/v1/account/orders/cancel-all",
                                                          { pair: this.market.pair });
      for (const order of canceled) this.upsertOrder(order);
      show(this.elements.orderMessage, `${canceled.length} order(s) canceled`);
      this.render();
    } catch (error) {
      show(this.elements.orderMessage, error.toString(), true);
    }
  }

  render() {
    const e = this.elements;
    const orders = [...this.orders.values()].sort((a, b) => b.created_at - a.created_at || b.order_id - a.order_id);
    e.openOrders.replaceChildren();
    for (const order of orders) {
      const row = e.openOrders.insertRow();
      row.dataset.orderId = order.order_id;
      cell(row, order.side, order.side);
      cell(row, order.price ?? "market");
      cell(row, order.quantity ?? "");
      cell(row, order.filled_quantity);
      cell(row, order.status);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = "Cancel";
      button.addEventListener("click", () => this.cancel(order.order_id));
      row.insertCell().append(button);
    }
    const fills = [...this.fills.values()].sort((a, b) => b.trade_id - a.trade_id || b.order_id - a.order_id);
    for (const fill of fills.slice(FILLS_SHOWN)) this.fills.delete(`${fill.trade_id}:${fill.order_id}`);
    e.fills.replaceChildren();
    for (const fill of fills.slice(0, FILLS_SHOWN)) {
      const row = e.fills.insertRow();
      cell(row, fill.ts ? clockTime(fill.ts) : "");
      cell(row, fill.side, fill.side);
      cell(row, fill.price);
      cell(row, fill.quantity);
      cell(row, `${fill.fee} ${fill.fee_asset}`);
      cell(row, fill.liquidity);
    }
  }
}
