// The candlestick chart, drawn by TradingView's Lightweight Charts (vendored, see docs/web.md).
//
// History comes from GET /api/v1/markets/{pair}/candles, the current candle from the
// feed's candles.{PAIR}.{INTERVAL} channel. Candle times are UTC, as the API buckets them.

import { decimalsOf } from "./format.js";

const { createChart, CandlestickSeries, HistogramSeries } = window.LightweightCharts;

function cssColor(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export class CandleChart {
  constructor(container) {
    this.up = cssColor("--bid", "#26a69a");
    this.down = cssColor("--ask", "#ef5350");
    const grid = cssColor("--grid", "#2a2e39");
    this.chart = createChart(container, {
      autoSize: true,
      // The license's attribution (TradingView's notice and a link) is in the page footer; the
      // logo would inject an inline <style>, which the page's Content-Security-Policy refuses.
      layout: { background: { color: "transparent" }, textColor: cssColor("--muted", "#8a8f98"), attributionLogo: false },
      grid: { vertLines: { color: grid }, horzLines: { color: grid } },
      rightPriceScale: { borderColor: grid },
      timeScale: { borderColor: grid, timeVisible: true, secondsVisible: false },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: this.up, downColor: this.down, wickUpColor: this.up, wickDownColor: this.down, borderVisible: false,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.lastTime = null;
  }

  /** Format prices with the market's tick. */
  setTickSize(tickSize) {
    this.candles.applyOptions({
      priceFormat: { type: "price", precision: decimalsOf(tickSize), minMove: Number(tickSize) },
    });
  }

  bar(candle) {
    const time = Math.floor(candle.open_time / 1000);
    const bar = { time, open: Number(candle.open), high: Number(candle.high), low: Number(candle.low),
                  close: Number(candle.close) };
    const color = bar.close >= bar.open ? this.up : this.down;
    return [bar, { time, value: Number(candle.volume), color: `${color}80` }];
  }

  /** Replace the history: candles oldest first, as the REST API answers. */
  setData(candles) {
    const bars = candles.map((candle) => this.bar(candle));
    this.candles.setData(bars.map(([bar]) => bar));
    this.volume.setData(bars.map(([, volume]) => volume));
    this.lastTime = bars.length ? bars.at(-1)[0].time : null;
    this.chart.timeScale().scrollToRealTime();
  }

  /** Show the feed's current candle (a new one, or the last one changing). */
  update(candle) {
    const [bar, volume] = this.bar(candle);
    if (this.lastTime !== null && bar.time < this.lastTime) return;  // older than what is drawn
    this.candles.update(bar);
    this.volume.update(volume);
    this.lastTime = bar.time;
  }
}
