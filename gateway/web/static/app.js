// The market page: wires the market selector, order book ladder, depth chart, trades tape,
// candles and the account panel to the REST API and the WebSocket feed.
//
// For each market the page subscribes to orderbook.{PAIR}.100, trades.{PAIR},
// ticker.{PAIR} and candles.{PAIR}.{INTERVAL}, and fetches the trades and candles that
// happened before from REST. Nothing here touches the DOM with HTML strings: every value
// from the network is set as text.

import { Account } from "./account.js";
import { publicGet, syncClock } from "./api.js";
import { Book } from "./book.js";
import { CandleChart } from "./candles.js";
import { DepthChart } from "./depth.js";
import { Feed, feedUrl } from "./feed.js";
import { clockTime, decimalsOf, fixed } from "./format.js";

const BOOK_DEPTH = 100;
const LADDER_ROWS = 15;
const TAPE_ROWS = 60;
const CANDLES_FETCHED = 500;
const MARKETS_RETRY_MS = 5000;
const FALLBACK_INTERVALS = ["1m", "5m", "15m", "30m", "1h", "4h", "1d"];

const $ = (id) => document.getElementById(id);

const state = {
  markets: new Map(),
  market: null,
  interval: "1m",
  book: new Book(),
  trades: new Map(),
  resyncing: false,       // a gap was seen: diffs are ignored until the fresh snapshot
  tradesShown: false,     // the first REST page is in: later trades flash as they arrive
  candlesLoaded: false,
  pendingCandle: null,    // the feed's current candle, held until the REST history is drawn
  bookScheduled: false,
};

function channels(pair, interval) {
  return {
    book: `orderbook.${pair}.${BOOK_DEPTH}`,
    trades: `trades.${pair}`,
    ticker: `ticker.${pair}`,
    candles: `candles.${pair}.${interval}`,
  };
}

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

// ---------------------------------------------------------------- the feed

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const feedAddress = feedUrl(location, meta("zmx-feed-url"), meta("zmx-feed-port"),
                            new URLSearchParams(location.search).get("ws"));

const feed = new Feed(feedAddress.url, {
  onState(stateName, detail) {
    const status = $("feed-status");
    status.dataset.state = stateName;
    status.textContent = `feed: ${stateName}`;
    status.title = detail;
  },
  onError(message) {
    showBanner(`Feed: ${message.code}: ${message.message}`);
    if (message.code === "EVENTS_LOST") account.reload();
  },
  onReconnect() {
    if (state.market) loadHistory(state.market);
  },
  onPrivateReady() {
    account.reload();
  },
});

const account = new Account(feed, {
  keyForm: $("key-form"), apiKey: $("api-key"), apiSecret: $("api-secret"), keyMessage: $("key-message"),
  account: $("account"), whoami: $("whoami"), forget: $("forget-key"), balances: $("balances"),
  ticket: $("ticket"), sides: document.querySelectorAll("#ticket .side"), type: $("order-type"),
  price: $("order-price"), quantity: $("order-quantity"), place: $("place-order"),
  orderMessage: $("order-message"), openOrders: $("open-orders"), cancelAll: $("cancel-all"), fills: $("fills"),
});

const depthChart = new DepthChart($("depth"));
const candleChart = new CandleChart($("candles"));

// ---------------------------------------------------------------- order book

function onBook(message) {
  const applied = state.book.apply(message);
  if (applied === "gap") {
    // A missed diff: ask for a fresh snapshot (once) rather than show a wrong book.
    if (!state.resyncing) {
      state.resyncing = true;
      $("book-seq").textContent = "resyncing…";
      feed.resubscribe(message.channel);
    }
    return;
  }
  if (applied === "snapshot") state.resyncing = false;
  if (state.bookScheduled) return;
  state.bookScheduled = true;
  requestAnimationFrame(() => {
    state.bookScheduled = false;
    renderBook();
  });
}

function ladderRows(container, levels, deepest, quantityDecimals, reverse) {
  const rows = [];
  let total = 0;
  for (const [price, size] of levels) {
    total += Number(size);
    const row = document.createElement("div");
    row.className = "level";
    row.dataset.price = price;
    row.style.setProperty("--fill", `${deepest ? (100 * total) / deepest : 0}%`);
    for (const [text, className] of [[price, "price"], [size, "size"], [fixed(total, quantityDecimals), "total"]]) {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      row.append(span);
    }
    rows.push(row);
  }
  container.replaceChildren(...(reverse ? rows.reverse() : rows));
}

function renderBook() {
  const market = state.market;
  const bids = state.book.levels("bids");
  const asks = state.book.levels("asks");
  const shownBids = bids.slice(0, LADDER_ROWS);
  const shownAsks = asks.slice(0, LADDER_ROWS);
  const sum = (levels) => levels.reduce((total, [, size]) => total + Number(size), 0);
  const deepest = Math.max(sum(shownBids), sum(shownAsks));
  const quantityDecimals = market ? decimalsOf(market.lot_size) : 3;
  const priceDecimals = market ? decimalsOf(market.tick_size) : 2;
  ladderRows($("asks"), shownAsks, deepest, quantityDecimals, true);
  ladderRows($("bids"), shownBids, deepest, quantityDecimals, false);
  if (bids.length && asks.length) {
    const bestBid = Number(bids[0][0]);
    const bestAsk = Number(asks[0][0]);
    const spread = bestAsk - bestBid;
    $("spread").textContent = `spread ${fixed(spread, priceDecimals)} (${fixed((100 * spread) / bestAsk, 3)}%)`;
  } else {
    $("spread").textContent = bids.length || asks.length ? "one-sided book" : "empty book";
  }
  $("book-seq").textContent = state.book.seq === null ? "" : `seq ${state.book.seq}`;
  depthChart.setBook(bids, asks, priceDecimals, quantityDecimals);
}

// ---------------------------------------------------------------- trades tape

function addTrades(trades, fresh) {
  for (const trade of trades) {
    if (!state.trades.has(trade.trade_id)) state.trades.set(trade.trade_id, { ...trade, fresh });
  }
  renderTrades();
}

function renderTrades() {
  const trades = [...state.trades.values()].sort((a, b) => b.trade_id - a.trade_id);
  for (const trade of trades.slice(TAPE_ROWS)) state.trades.delete(trade.trade_id);
  const items = trades.slice(0, TAPE_ROWS).map((trade) => {
    const item = document.createElement("li");
    item.className = `trade ${trade.taker_side}${trade.fresh ? " fresh" : ""}`;
    item.dataset.tradeId = trade.trade_id;
    for (const [text, className] of [[trade.price, "price"], [trade.quantity, "quantity"], [clockTime(trade.ts), "time"]]) {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      item.append(span);
    }
    trade.fresh = false;  // flash once
    return item;
  });
  $("trades").replaceChildren(...items);
}

function onTrades(message) {
  addTrades(message.data, state.tradesShown);
}

// ---------------------------------------------------------------- ticker and candles

function onTicker(message) {
  const ticker = message.data;
  $("ticker-last").textContent = ticker.last ?? "–";
  $("ticker-change").textContent = ticker.change === null ? "–" : `${ticker.change} (${ticker.change_percent}%)`;
  $("ticker-change").className = ticker.change && ticker.change.startsWith("-") ? "ask" : "bid";
  $("ticker-high").textContent = ticker.high ?? "–";
  $("ticker-low").textContent = ticker.low ?? "–";
  $("ticker-volume").textContent = ticker.volume;
}

function onCandle(message) {
  if (message.data === null) return;  // no trade in the current interval yet
  if (state.candlesLoaded) candleChart.update(message.data);
  else state.pendingCandle = message.data;
}

function renderIntervals(intervals) {
  const buttons = intervals.map((interval) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = interval;
    button.dataset.interval = interval;
    button.setAttribute("aria-pressed", String(interval === state.interval));
    button.addEventListener("click", () => selectInterval(interval));
    return button;
  });
  $("intervals").replaceChildren(...buttons);
}

function selectInterval(interval) {
  if (interval === state.interval || !state.market) return;
  const pair = state.market.pair;
  feed.unsubscribe([channels(pair, state.interval).candles]);
  state.interval = interval;
  for (const button of $("intervals").children) {
    button.setAttribute("aria-pressed", String(button.dataset.interval === interval));
  }
  feed.subscribe([channels(pair, interval).candles], onCandle);
  loadCandles(state.market, interval);
}

// ---------------------------------------------------------------- REST history

async function loadTrades(market) {
  try {
    const page = await publicGet(`/api/v1/markets/${market.pair}/trades?limit=${TAPE_ROWS}`);
    if (state.market !== market) return;
    addTrades(page.items, false);
  } catch (error) {
    if (state.market === market) showBanner(`Past trades: ${error}`);
  }
  state.tradesShown = true;
}

async function loadCandles(market, interval) {
  state.candlesLoaded = false;
  state.pendingCandle = null;
  let candles = [];
  try {
    candles = await publicGet(`/api/v1/markets/${market.pair}/candles?interval=${interval}&limit=${CANDLES_FETCHED}`);
  } catch (error) {
    if (state.market === market) showBanner(`Past candles: ${error}`);
  }
  if (state.market !== market || state.interval !== interval) return;  // switched meanwhile
  candleChart.setData(candles);
  state.candlesLoaded = true;
  if (state.pendingCandle) candleChart.update(state.pendingCandle);
  state.pendingCandle = null;
}

function loadHistory(market) {
  loadTrades(market);
  loadCandles(market, state.interval);
}

// ---------------------------------------------------------------- markets

function selectMarket(pair) {
  const market = state.markets.get(pair);
  if (!market || market === state.market) return;
  if (state.market) feed.unsubscribe(Object.values(channels(state.market.pair, state.interval)));
  state.market = market;
  $("market-select").value = pair;
  history.replaceState(null, "", `#${pair}`);
  document.title = `${pair} · zmx`;
  state.book.clear();
  state.resyncing = false;
  state.trades.clear();
  state.tradesShown = false;
  renderBook();
  renderTrades();
  for (const id of ["ticker-last", "ticker-change", "ticker-high", "ticker-low", "ticker-volume"]) $(id).textContent = "–";
  showBanner(feedAddress.warning);
  if (market.status === "halted") showBanner(`${pair} is halted: new orders are refused, cancels work.`);
  candleChart.setTickSize(market.tick_size);
  const subscribed = channels(pair, state.interval);
  feed.subscribe([subscribed.book], onBook);
  feed.subscribe([subscribed.trades], onTrades);
  feed.subscribe([subscribed.ticker], onTicker);
  feed.subscribe([subscribed.candles], onCandle);
  loadHistory(market);
  account.setMarket(market);
}

async function loadMarkets() {
  let markets;
  let intervals = FALLBACK_INTERVALS;
  try {
    const [page, info] = await Promise.all([publicGet("/api/v1/markets"), publicGet("/api/v1/exchange-info")]);
    markets = page.items;
    intervals = info.candle_intervals || intervals;
  } catch (error) {
    showBanner(`Markets: ${error}; retrying`);
    setTimeout(loadMarkets, MARKETS_RETRY_MS);
    return;
  }
  if (!markets.length) {
    showBanner("No markets yet: an admin creates them (POST /api/v1/admin/markets or zmx admin create-market).");
    setTimeout(loadMarkets, MARKETS_RETRY_MS);
    return;
  }
  renderIntervals(intervals);
  const select = $("market-select");
  select.replaceChildren(...markets.map((market) => new Option(market.pair, market.pair)));
  state.markets = new Map(markets.map((market) => [market.pair, market]));
  const wanted = decodeURIComponent(location.hash.slice(1));
  selectMarket(state.markets.has(wanted) ? wanted : markets[0].pair);
}

$("market-select").addEventListener("change", (event) => selectMarket(event.target.value));
window.addEventListener("hashchange", () => selectMarket(decodeURIComponent(location.hash.slice(1))));
for (const side of ["asks", "bids"]) {
  $(side).addEventListener("click", (event) => {
    const level = event.target.closest(".level");
    if (level) account.setPrice(level.dataset.price);
  });
}

showBanner(feedAddress.warning);
feed.start();
loadMarkets();
// Sign in (with a key this tab kept) once the clock offset is known; if /time fails the
// markets banner says why, and signing uses this machine's clock as it is.
syncClock().then(() => account.restore(), () => account.restore());
