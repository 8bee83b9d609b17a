// Decimal strings and times, as the API writes them.
//
// Prices and quantities stay the exact decimal strings the API sends; they are compared
// as decimals (never through floats) and turned into numbers only to draw them.

/** Compare two non-negative decimal strings ("42150.50", "7"): -1, 0 or 1. */
export function compareDecimal(a, b) {
  const [aInt, aFrac = ""] = a.split(".");
  const [bInt, bFrac = ""] = b.split(".");
  const aWhole = aInt.replace(/^0+(?=\d)/, "");
  const bWhole = bInt.replace(/^0+(?=\d)/, "");
  if (aWhole.length !== bWhole.length) return aWhole.length < bWhole.length ? -1 : 1;
  if (aWhole !== bWhole) return aWhole < bWhole ? -1 : 1;
  const width = Math.max(aFrac.length, bFrac.length);
  const aPadded = aFrac.padEnd(width, "0");
  const bPadded = bFrac.padEnd(width, "0");
  if (aPadded === bPadded) return 0;
  return aPadded < bPadded ? -1 : 1;
}

/** True for "0", "0.000" and the like. */
export function isZero(decimal) {
  return /^0*\.?0*$/.test(decimal);
}

/** Digits after the point of a step such as a tick size ("0.01" -> 2). */
export function decimalsOf(step) {
  const fraction = step.split(".")[1] || "";
  return fraction.replace(/0+$/, "").length;
}

/** "13:37:05" in the viewer's time zone, from epoch milliseconds. */
export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** A number for display with a fixed number of decimals (for sums computed in the page). */
export function fixed(number, decimals) {
  return number.toLocaleString("en-US", {
    minimumFractionDigits: decimals, maximumFractionDigits: decimals, useGrouping: false,
  });
}
