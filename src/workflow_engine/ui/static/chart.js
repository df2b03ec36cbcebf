// Small SVG charts drawn from data: a bar chart (stacked when given several keys) with its
// numbers also in a table, and a sparkline. No library: a few rectangles and lines.

import { fmtNumber, h, svg, uniqueId } from "./dom.js";

const MARGIN = { top: 12, right: 12, bottom: 40, left: 64 };

/** A round number at or above `value` (1, 2 or 5 times a power of ten). */
function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/** Short axis numbers: 1.2k, 3M. */
function compact(value) {
  return new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

/**
 * A bar chart as an inline SVG inside a `<figure>`, with a `<title>` tooltip per bar, axis
 * labels, a legend, and the same numbers in a table for screen readers and copying.
 * @param {Array<{label: string, values: Object<string, number>, note?: string}>} series one
 *   bar per entry, left to right; `values` by stack key; `note` is added to the tooltip
 * @param {{testid?: string, title: string, stack: Array<{key: string, label: string}>,
 *          width?: number, height?: number, format?: (value: number) => string,
 *          unit?: string}} options `stack` names the segments bottom to top (one for plain
 *   bars); `format` writes values in tooltips and the table (default: digit grouping)
 * @returns {HTMLElement} the `<figure>`; the SVG carries `data-testid`
 */
export function barChart(series, options) {
  const { testid, title, stack, width = 640, height = 240, format = fmtNumber, unit = "" } = options;
  const titleId = uniqueId("chart-title");
  const descId = uniqueId("chart-desc");
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const totals = series.map((entry) => stack.reduce((sum, { key }) => sum + (entry.values[key] ?? 0), 0));
  // Four gridline steps of a round size: 0, 1K, 2K, 3K, 4K rather than quarters of 5K.
  const top = 4 * niceCeiling(Math.max(0, ...totals) / 4);
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const slot = plotWidth / Math.max(1, series.length);
  const barWidth = Math.max(2, Math.min(48, slot * 0.7));
  // Label every n-th bar, counted back from the newest, so labels about 56 px wide never
  // overlap and the last bar always has one.
  const labelEvery = Math.max(1, Math.ceil(56 / slot));

  const grid = [0, 0.25, 0.5, 0.75, 1].map((fraction) => {
    const value = top * fraction;
    return svg("g", { class: "chart-grid" },
      svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value) }),
      svg("text", { x: MARGIN.left - 6, y: y(value), "text-anchor": "end", "dominant-baseline": "middle" }, compact(value)));
  });

  const bars = series.map((entry, index) => {
    const x = MARGIN.left + slot * index + (slot - barWidth) / 2;
    let base = 0;
    const segments = stack.map(({ key }, layer) => {
      const value = entry.values[key] ?? 0;
      const rect = svg("rect", {
        class: `chart-bar chart-series-${layer}`, x, width: barWidth,
        y: y(base + value), height: Math.max(0, y(base) - y(base + value)),
      });
      base += value;
      return rect;
    });
    const parts = stack.length > 1 ? ` (${stack.map(({ key, label }) => `${label} ${format(entry.values[key] ?? 0)}`).join(", ")})` : "";
    const tooltip = `${entry.label}: ${format(totals[index])}${unit}${parts}${entry.note ? `; ${entry.note}` : ""}`;
    const label = (series.length - 1 - index) % labelEvery === 0
      ? svg("text", { class: "chart-label", x: x + barWidth / 2, y: height - MARGIN.bottom + 16, "text-anchor": "middle" }, entry.label)
      : null;
    // A transparent full-height target makes small bars easy to hover for their tooltip.
    const target = svg("rect", { class: "chart-target", x: MARGIN.left + slot * index, width: slot, y: MARGIN.top, height: plotHeight });
    return svg("g", { class: "chart-column" }, svg("title", null, tooltip), target, ...segments, label);
  });

  const axis = svg("line", { class: "chart-axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) });
  const peak = totals.length ? Math.max(...totals) : 0;
  const peakAt = series[totals.indexOf(peak)]?.label;
  const summary = series.length
    ? `${series.length} bars from ${series[0].label} to ${series.at(-1).label}; total ${format(totals.reduce((a, b) => a + b, 0))}${unit}` +
      (peak > 0 ? `; highest ${format(peak)}${unit} on ${peakAt}.` : "; all zero.")
    : "No data.";
  const chart = svg("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-labelledby": `${titleId} ${descId}`, "data-testid": testid,
    preserveAspectRatio: "xMinYMin meet",
  }, svg("title", { id: titleId }, title), svg("desc", { id: descId }, summary), ...grid, axis, ...bars);

  const legend = stack.length > 1
    ? h("ul", { class: "chart-legend" }, stack.map(({ label }, layer) =>
      h("li", null, h("span", { class: `chart-swatch chart-series-${layer}`, "aria-hidden": "true" }), label)))
    : null;
  const rows = series.map((entry, index) => h("tr", null,
    h("th", { scope: "row" }, entry.label),
    stack.length > 1 ? stack.map(({ key }) => h("td", { class: "number" }, format(entry.values[key] ?? 0))) : null,
    h("td", { class: "number" }, format(totals[index])),
    entry.note !== undefined ? h("td", { class: "number" }, entry.note) : null));
  const hasNotes = series.some((entry) => entry.note !== undefined);
  const head = h("tr", null, h("th", { scope: "col" }, options.categoryLabel ?? ""),
    stack.length > 1 ? stack.map(({ label }) => h("th", { scope: "col", class: "number" }, label)) : null,
    h("th", { scope: "col", class: "number" }, options.totalLabel ?? "Total"),
    hasNotes ? h("th", { scope: "col", class: "number" }, options.noteLabel ?? "") : null);
  const data = h("details", { class: "chart-data" }, h("summary", null, "The numbers as a table"),
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": `${title} data` },
      h("table", null, h("caption", { class: "visually-hidden" }, title), h("thead", null, head), h("tbody", null, rows))));
  return h("figure", { class: "chart-figure" }, h("div", { class: "chart-box" }, chart), legend, data);
}

/**
 * A sparkline: a small line of values oldest to newest, with failed points marked.
 * @param {Array<{value: number|null, ok: boolean, title?: string}>} points oldest first;
 *   `value` null draws no line point (a failed check without a latency)
 * @param {{testid?: string, label: string, width?: number, height?: number}} options `label`
 *   is the accessible name: say what the line shows and its key numbers
 * @returns {SVGSVGElement}
 */
export function sparkline(points, { testid, label, width = 120, height = 28 }) {
  const pad = 3;
  const values = points.map((point) => point.value).filter((value) => typeof value === "number");
  const high = values.length ? Math.max(...values) : 1;
  const low = values.length ? Math.min(...values) : 0;
  const span = high - low || 1;
  const step = points.length > 1 ? (width - 2 * pad) / (points.length - 1) : 0;
  const x = (index) => pad + step * index;
  const y = (value) => height - pad - ((value - low) / span) * (height - 2 * pad);
  const coords = points
    .map((point, index) => (typeof point.value === "number" ? `${x(index).toFixed(1)},${y(point.value).toFixed(1)}` : null))
    .filter(Boolean);
  const marks = points.map((point, index) => {
    if (point.ok && index !== points.length - 1) return null;
    const cy = typeof point.value === "number" ? y(point.value) : height - pad;
    return svg("circle", { class: point.ok ? "spark-last" : "spark-fail", cx: x(index), cy, r: 2.5 },
      point.title ? svg("title", null, point.title) : null);
  });
  return svg("svg", {
    class: "sparkline", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": label, "data-testid": testid,
  }, svg("title", null, label),
  coords.length > 1 ? svg("polyline", { class: "spark-line", points: coords.join(" ") }) : null,
  ...marks);
}
