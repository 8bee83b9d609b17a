// The depth chart: cumulative bid and ask quantity by price, drawn on a canvas.
//
// Bids step down and to the left of the best bid, asks up and to the right of the best
// ask. Hovering shows the price under the pointer and the quantity one would have to
// trade through to reach it. Drawing happens at most once per animation frame.

import { fixed } from "./format.js";

const MARGIN = { left: 8, right: 64, top: 12, bottom: 22 };
const PRICE_LABELS = 5;
const QUANTITY_LABELS = 4;

function cumulative(levels) {
  let total = 0;
  return levels.map(([price, size]) => {
    total += Number(size);
    return [Number(price), total];
  });
}

export class DepthChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.bids = [];
    this.asks = [];
    this.priceDecimals = 2;
    this.quantityDecimals = 3;
    this.hoverX = null;
    this.scheduled = false;
    new ResizeObserver(() => this.schedule()).observe(canvas);
    canvas.addEventListener("mousemove", (event) => { this.hoverX = event.offsetX; this.schedule(); });
    canvas.addEventListener("mouseleave", () => { this.hoverX = null; this.schedule(); });
  }

  /** Show a book: levels as [price, size] decimal strings, best first. */
  setBook(bids, asks, priceDecimals, quantityDecimals) {
    this.bids = cumulative(bids);
    this.asks = cumulative(asks);
    this.priceDecimals = priceDecimals;
    this.quantityDecimals = quantityDecimals;
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  priceRange() {
    const prices = [...this.bids, ...this.asks].map(([price]) => price);
    let low = Math.min(...prices);
    let high = Math.max(...prices);
    if (low === high) {
      low *= 0.99;
      high *= 1.01;
    }
    const pad = (high - low) * 0.02;
    return [low - pad, high + pad];
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const colors = {
      bid: style.getPropertyValue("--bid").trim() || "#26a69a",
      ask: style.getPropertyValue("--ask").trim() || "#ef5350",
      text: style.getPropertyValue("--muted").trim() || "#888",
      grid: style.getPropertyValue("--grid").trim() || "#333",
    };
    context.font = "11px system-ui, sans-serif";
    context.fillStyle = colors.text;
    if (!this.bids.length && !this.asks.length) {
      context.textAlign = "center";
      context.fillText("no orders", width / 2, height / 2);
      return;
    }
    const [low, high] = this.priceRange();
    const deepest = Math.max(this.bids.at(-1)?.[1] || 0, this.asks.at(-1)?.[1] || 0);
    const plotWidth = width - MARGIN.left - MARGIN.right;
    const plotHeight = height - MARGIN.top - MARGIN.bottom;
    const bottom = MARGIN.top + plotHeight;
    const x = (price) => MARGIN.left + ((price - low) / (high - low)) * plotWidth;
    const y = (quantity) => bottom - (quantity / deepest) * plotHeight;

    this.drawAxes(context, colors, { low, high, deepest, plotWidth, bottom, x, y });
    this.drawSide(context, this.bids, colors.bid, x, y, x(low));
    this.drawSide(context, this.asks, colors.ask, x, y, x(high));
    if (this.hoverX !== null && this.hoverX >= MARGIN.left && this.hoverX <= MARGIN.left + plotWidth) {
      const price = low + ((this.hoverX - MARGIN.left) / plotWidth) * (high - low);
      this.drawHover(context, colors, price, this.hoverX, bottom);
    }
  }

  drawAxes(context, colors, { low, high, deepest, plotWidth, bottom, x, y }) {
    context.strokeStyle = colors.grid;
    context.lineWidth = 1;
    for (let index = 0; index <= PRICE_LABELS; index += 1) {
      const price = low + ((high - low) * index) / PRICE_LABELS;
      // The outermost labels grow inwards so that they stay on the canvas.
      context.textAlign = index === 0 ? "left" : index === PRICE_LABELS ? "right" : "center";
      context.fillText(fixed(price, this.priceDecimals), x(price), bottom + 15);
    }
    context.textAlign = "left";
    for (let index = 1; index <= QUANTITY_LABELS; index += 1) {
      const quantity = (deepest * index) / QUANTITY_LABELS;
      const level = Math.round(y(quantity)) + 0.5;
      context.beginPath();
      context.moveTo(MARGIN.left, level);
      context.lineTo(MARGIN.left + plotWidth, level);
      context.stroke();
      context.fillText(fixed(quantity, this.quantityDecimals), MARGIN.left + plotWidth + 6, level + 4);
    }
    context.beginPath();
    context.moveTo(MARGIN.left, bottom + 0.5);
    context.lineTo(MARGIN.left + plotWidth, bottom + 0.5);
    context.stroke();
  }

  /** One side as a step curve from its best price outwards to `edge`, filled below. */
  drawSide(context, levels, color, x, y, edge) {
    if (!levels.length) return;
    context.beginPath();
    context.moveTo(x(levels[0][0]), y(0));
    let previous = 0;
    for (const [price, total] of levels) {
      context.lineTo(x(price), y(previous));
      context.lineTo(x(price), y(total));
      previous = total;
    }
    context.lineTo(edge, y(previous));
    context.strokeStyle = color;
    context.lineWidth = 1.5;
    context.stroke();
    context.lineTo(edge, y(0));
    context.closePath();
    context.globalAlpha = 0.2;
    context.fillStyle = color;
    context.fill();
    context.globalAlpha = 1;
  }

  drawHover(context, colors, price, pointerX, bottom) {
    // Quantity resting between the best price and `price`: what a taker would go through.
    const through = (levels, reached) => levels.filter(([level]) => reached(level)).at(-1)?.[1] || 0;
    const bestBid = this.bids[0]?.[0];
    const bestAsk = this.asks[0]?.[0];
    let quantity = null;
    if (bestBid !== undefined && price <= bestBid) quantity = through(this.bids, (level) => level >= price);
    if (bestAsk !== undefined && price >= bestAsk) quantity = through(this.asks, (level) => level <= price);
    context.strokeStyle = colors.text;
    context.setLineDash([3, 3]);
    context.beginPath();
    context.moveTo(pointerX + 0.5, MARGIN.top);
    context.lineTo(pointerX + 0.5, bottom);
    context.stroke();
    context.setLineDash([]);
    const label = `${fixed(price, this.priceDecimals)}${quantity === null ? "" : `  ·  ${fixed(quantity, this.quantityDecimals)}`}`;
    context.fillStyle = colors.text;
    context.textAlign = pointerX > this.canvas.clientWidth / 2 ? "right" : "left";
    context.fillText(label, pointerX + (context.textAlign === "right" ? -6 : 6), MARGIN.top + 10);
  }
}
