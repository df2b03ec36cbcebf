// A workflow drawn as an SVG graph: steps as nodes laid out by levels of `needs`, an edge per
// need. Left to right on wide screens, top to bottom on narrow ones.
//
// The layout is a small layered drawing: each step's level is its longest chain of needs; a
// need that skips levels passes through one waypoint per level it crosses (shared by every
// edge leaving the same step, so they run as one line until they part), so no edge is drawn
// through a node; a few barycenter sweeps order each level to cut crossings, and each item
// then moves towards its neighbours in the levels before and after.
//
// Coordinates are computed along the flow ("along") and across it ("across") and turned into
// x/y at the end, so both orientations share the code.

import { svg } from "./dom.js";

const NODE_WIDTH = 152;
const NARROW_NODE_WIDTH = 128; // top to bottom, levels lie across a phone's width
const NODE_HEIGHT = 48;
const LEVEL_GAP = 44; // between levels, along the flow
const ROW_GAP = 16; // between nodes of one level
const WAYPOINT_GAP = 8; // beside a waypoint: edges may run closer to each other than nodes
const MARGIN = 10;
const SWEEPS = 4;
const MIN_SCALE = 0.72; // below this the box scrolls instead of shrinking the text further
const NARROW = matchMedia("(max-width: 639px)");
// A mark per status beside the step's id, so status never shows by colour alone (the node's
// accessible name says it in words).
const GLYPHS = {
  pending: "○",
  running: "▶",
  waiting: "◷",
  scheduled: "◷",
  completed: "✓",
  failed: "✕",
  cancelling: "⊘",
  cancelled: "⊘",
  skipped: "↷",
};

// The longest chain of needs before each step: its level.
function levels(steps) {
  const byId = new Map(steps.map((step) => [step.id, step]));
  const level = new Map();
  const visiting = new Set();
  const depth = (id) => {
    if (level.has(id)) return level.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot run; do not recurse for ever drawing one
    visiting.add(id);
    const needs = (byId.get(id)?.needs || []).filter((need) => byId.has(need));
    const value = needs.length ? 1 + Math.max(...needs.map(depth)) : 0;
    visiting.delete(id);
    level.set(id, value);
    return value;
  };
  steps.forEach((step) => depth(step.id));
  return level;
}

// The layers: steps and waypoints per level, each item knowing the items it links to in the
// levels before (`up`) and after (`down`).
function layers(steps, vertical) {
  const level = levels(steps);
  const thickness = vertical ? NARROW_NODE_WIDTH : NODE_HEIGHT;
  const items = new Map();
  const rows = [];
  const add = (key, depth, step) => {
    const item = { key, step, depth, size: step ? thickness : 0, up: [], down: [] };
    items.set(key, item);
    (rows[depth] ||= []).push(item);
    return item;
  };
  for (const step of steps) add(step.id, level.get(step.id), step);
  const link = (from, to) => {
    if (!from.down.includes(to)) from.down.push(to);
    if (!to.up.includes(from)) to.up.push(from);
  };
  const routes = []; // [need, step, items from the need to the step]
  for (const step of steps) {
    for (const need of step.needs || []) {
      if (!items.has(need) || need === step.id) continue;
      const path = [items.get(need)];
      for (let depth = level.get(need) + 1; depth < level.get(step.id); depth += 1) {
        const key = `${need}\u0000${depth}`;
        path.push(items.get(key) || add(key, depth, null));
      }
      path.push(items.get(step.id));
      for (let index = 1; index < path.length; index += 1) link(path[index - 1], path[index]);
      routes.push([need, step.id, path]);
    }
  }
  return { rows: rows.map((row) => row || []), routes };
}

function crossings(rows) {
  let count = 0;
  for (const row of rows) {
    const pairs = [];
    for (const item of row) for (const next of item.down) pairs.push([item.order, next.order]);
    for (let i = 0; i < pairs.length; i += 1) {
      for (let j = i + 1; j < pairs.length; j += 1) {
        if ((pairs[i][0] - pairs[j][0]) * (pairs[i][1] - pairs[j][1]) < 0) count += 1;
      }
    }
  }
  return count;
}

// Orders each level by the mean position of its items' neighbours in the level before (a
// sweep down) or after (a sweep up), keeping the order that crosses least.
function order(rows) {
  const number = () => rows.forEach((row) => row.forEach((item, index) => (item.order = index)));
  number();
  let best = rows.map((row) => [...row]);
  let fewest = crossings(rows);
  const sortBy = (row, neighbours) => {
    const weight = (item) => {
      const others = neighbours(item);
      return others.length ? others.reduce((sum, other) => sum + other.order, 0) / others.length : item.order;
    };
    const weights = new Map(row.map((item) => [item, weight(item)]));
    row.sort((a, b) => weights.get(a) - weights.get(b) || a.order - b.order);
    row.forEach((item, index) => (item.order = index));
  };
  for (let sweep = 0; sweep < SWEEPS && fewest > 0; sweep += 1) {
    for (let depth = 1; depth < rows.length; depth += 1) sortBy(rows[depth], (item) => item.up);
    for (let depth = rows.length - 2; depth >= 0; depth -= 1) sortBy(rows[depth], (item) => item.down);
    const count = crossings(rows);
    if (count < fewest) {
      fewest = count;
      best = rows.map((row) => [...row]);
    }
  }
  best.forEach((row, depth) => {
    rows[depth] = row;
    row.forEach((item, index) => (item.order = index));
  });
}

function gapBetween(a, b) {
  return a.step && b.step ? ROW_GAP : WAYPOINT_GAP;
}

// Places a level's items in their order, each as near as it may get to where it wants to be.
function place(row, wanted) {
  const forward = [];
  row.forEach((item, index) => {
    const floor = index ? forward[index - 1] + row[index - 1].size + gapBetween(row[index - 1], item) : -Infinity;
    forward.push(Math.max(wanted(item), floor));
  });
  const backward = [];
  for (let index = row.length - 1; index >= 0; index -= 1) {
    const item = row[index];
    const next = row[index + 1];
    const ceiling = next ? backward[index + 1] - item.size - gapBetween(item, next) : Infinity;
    backward[index] = Math.min(wanted(item), ceiling);
  }
  row.forEach((item, index) => {
    const previous = row[index - 1];
    const floor = previous ? previous.across + previous.size + gapBetween(previous, item) : -Infinity;
    item.across = Math.max((forward[index] + backward[index]) / 2, floor);
  });
}

// Across positions: stacked, then a few passes pulling each item towards its neighbours.
function spread(rows) {
  for (const row of rows) {
    let next = 0;
    for (const [index, item] of row.entries()) {
      if (index) next += gapBetween(row[index - 1], item);
      item.across = next;
      next += item.size;
    }
  }
  const centre = (item) => item.across + item.size / 2;
  const towards = (neighbours) => (item) => {
    const others = neighbours(item);
    if (!others.length) return item.across;
    return others.reduce((sum, other) => sum + centre(other), 0) / others.length - item.size / 2;
  };
  for (let pass = 0; pass < SWEEPS; pass += 1) {
    for (let depth = 1; depth < rows.length; depth += 1) place(rows[depth], towards((item) => item.up));
    for (let depth = rows.length - 2; depth >= 0; depth -= 1) place(rows[depth], towards((item) => item.down));
  }
  const all = rows.flat();
  const least = Math.min(...all.map((item) => item.across));
  for (const item of all) item.across += MARGIN - least;
  return Math.max(...all.map((item) => item.across + item.size)) + MARGIN;
}

function layout(steps, vertical) {
  const { rows, routes } = layers(steps, vertical);
  order(rows);
  const breadth = spread(rows);
  const length = vertical ? NODE_HEIGHT : NODE_WIDTH;
  const along = (depth) => MARGIN + depth * (length + LEVEL_GAP);
  const point = (a, b) => (vertical ? { x: b, y: a } : { x: a, y: b });
  const nodes = rows
    .flat()
    .filter((item) => item.step)
    .map((item) => ({ step: item.step, at: point(along(item.depth), item.across) }));
  const edges = routes.map(([from, to, path]) => {
    // Out of the need's far side, through each waypoint straight across its level, into the
    // step's near side; a curve in each gap between levels.
    const middle = (item) => item.across + (item.step ? item.size / 2 : 0);
    const stops = [];
    path.forEach((item, index) => {
      const start = along(item.depth);
      if (index > 0) stops.push([start, middle(item)]);
      if (index < path.length - 1) stops.push([start + length, middle(item)]);
    });
    let d = "";
    for (let index = 0; index < stops.length; index += 2) {
      const [a1, b1] = stops[index];
      const [a2, b2] = stops[index + 1];
      const bend = (a2 - a1) / 2;
      const p = [point(a1, b1), point(a1 + bend, b1), point(a2 - bend, b2), point(a2, b2)];
      d += `${index ? ` L${p[0].x},${p[0].y}` : `M${p[0].x},${p[0].y}`}`;
      d += b1 === b2 ? ` L${p[3].x},${p[3].y}` : ` C${p[1].x},${p[1].y} ${p[2].x},${p[2].y} ${p[3].x},${p[3].y}`;
    }
    return { from, to, d };
  });
  const extent = along(rows.length) - LEVEL_GAP + MARGIN;
  const size = vertical ? { width: breadth, height: extent } : { width: extent, height: breadth };
  return { nodes, edges, size };
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

let graphs = 0;

/**
 * Draws a workflow's steps as an inline SVG graph, scaled to its box: never wider than its
 * natural size, and shrunk no further than a readable scale (below that the box scrolls).
 * Nodes come in reading order (level by level), so Tab walks the graph along its flow.
 * @param {{id: string, uses: string, needs: string[]}[]} steps
 * @param {{testid?: string, onSelect?: (stepId: string) => void}} [options]
 * @returns {{element: HTMLElement, update: (statusById: Object<string, string>) => void,
 *   select: (stepId: string|null) => void}} `element` is a box holding the SVG (it scrolls
 *   inside itself when the graph is too wide to shrink readably)
 */
export function drawGraph(steps, { testid = "graph", onSelect } = {}) {
  graphs += 1;
  const marker = `arrow-${graphs}`;
  // `statuses` is null until `update()` gives some: a template's graph shows none.
  const state = { statuses: null, selected: null };
  const box = document.createElement("div");
  box.className = "graph-box";

  const draw = () => {
    const vertical = NARROW.matches;
    const { nodes, edges, size } = layout(steps, vertical);
    const width = vertical ? NARROW_NODE_WIDTH : NODE_WIDTH;
    const focused = box.querySelector("g.node:focus")?.getAttribute("data-step");
    const element = svg(
      "svg",
      {
        "data-testid": testid,
        class: "graph",
        viewBox: `0 0 ${size.width} ${size.height}`,
        width: "100%",
        role: "group",
        "aria-label": `Workflow graph, ${steps.length} steps`,
        "data-layout": vertical ? "vertical" : "horizontal",
      },
      svg(
        "defs",
        null,
        svg(
          "marker",
          {
            id: marker,
            viewBox: "0 0 10 10",
            refX: "9",
            refY: "5",
            markerWidth: "7",
            markerHeight: "7",
            orient: "auto-start-reverse",
          },
          svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
        ),
      ),
      svg(
        "g",
        { class: "edges" },
        edges.map((edge) =>
          svg("path", {
            class: "edge",
            d: edge.d,
            "data-from": edge.from,
            "data-to": edge.to,
            "marker-end": `url(#${marker})`,
          }),
        ),
      ),
      svg(
        "g",
        { class: "nodes" },
        nodes.map(({ step, at }) => node(step, at, width)),
      ),
    );
    element.style.minWidth = `${Math.round(size.width * MIN_SCALE)}px`;
    element.style.maxWidth = `${size.width}px`;
    box.replaceChildren(element);
    paint();
    if (focused) box.querySelector(`g.node[data-step="${CSS.escape(focused)}"]`)?.focus();
  };

  // The text is clipped to what the node's width holds (14 px and 12 px type); the id leaves
  // room for the status mark at its right.
  const node = (step, at, width) =>
    svg(
      "g",
      {
        class: "node",
        "data-step": step.id,
        "data-status": "pending",
        tabindex: "0",
        role: "button",
        "aria-pressed": "false",
        transform: `translate(${at.x},${at.y})`,
        onclick: () => onSelect && onSelect(step.id),
        onkeydown: (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            if (onSelect) onSelect(step.id);
          }
        },
      },
      svg("title", null, ""),
      svg("rect", { width, height: NODE_HEIGHT, rx: "8", ry: "8" }),
      svg("text", { x: "11", y: "20", class: "node-id" }, clip(step.id, Math.floor((width - 36) / 8.4))),
      svg("text", { x: String(width - 10), y: "20", class: "node-glyph", "text-anchor": "end", "aria-hidden": "true" }),
      svg("text", { x: "11", y: "37", class: "node-uses" }, clip(step.uses || "", Math.floor((width - 18) / 6.6))),
    );

  // Status and selection onto whatever nodes are drawn (after a redraw too).
  const paint = () => {
    for (const group of box.querySelectorAll("g.node")) {
      const id = group.getAttribute("data-step");
      const step = steps.find((item) => item.id === id);
      const status = (state.statuses && state.statuses[id]) || "pending";
      group.setAttribute("data-status", status);
      group.querySelector(".node-glyph").textContent = state.statuses ? (GLYPHS[status] ?? "•") : "";
      const said = state.statuses ? `: ${status}` : "";
      group.setAttribute("aria-label", `${id} (${step.uses})${said}`);
      group.querySelector("title").textContent = `${id} · ${step.uses}${state.statuses ? ` · ${status}` : ""}`;
      const selected = id === state.selected;
      group.classList.toggle("selected", selected);
      group.setAttribute("aria-pressed", String(selected));
    }
  };

  // Laid out again when the screen crosses the narrow width; a graph no longer shown lets go.
  const relayout = () => {
    if (box.isConnected) draw();
    else NARROW.removeEventListener("change", relayout);
  };
  NARROW.addEventListener("change", relayout);
  draw();

  return {
    element: box,
    update(statusById) {
      state.statuses = { ...statusById };
      paint();
    },
    select(stepId) {
      state.selected = stepId;
      paint();
    },
  };
}
