// The fleet on an SVG map: Web Mercator (EPSG:3857) pixel coordinates at a zoom fitted to the
// fleet, so an optional XYZ tile server ([web] tile_url) lines up with the nodes; no tiles by default.
import { esc, label, lookOf } from "./model.js";

const TILE = 256;
const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_TILES = 64;

export function project(lat, lon, zoom) {
  const scale = TILE * 2 ** zoom;
  const sin = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  return [
    ((lon + 180) / 360) * scale,
    (0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI)) * scale,
  ];
}

// Order a street's nodes along its main direction (first principal axis of their positions).
function alongStreet(points) {
  if (points.length < 3) return points;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  let sxx = 0, syy = 0, sxy = 0;
  for (const p of points) {
    sxx += (p.x - mx) ** 2;
    syy += (p.y - my) ** 2;
    sxy += (p.x - mx) * (p.y - my);
  }
  const angle = 0.5 * Math.atan2(2 * sxy, sxx - syy);
  const [ux, uy] = [Math.cos(angle), Math.sin(angle)];
  return [...points].sort((a, b) => (a.x - mx) * ux + (a.y - my) * uy - ((b.x - mx) * ux + (b.y - my) * uy));
}

const whereOf = (d) => `${d.latitude},${d.longitude},${d.street || d.group || ""}`;

function titleOf(d, look, alarms) {
  return `${label(d)} — ${d.kind}, ${look}${alarms.length ? ` (${alarms.join(", ")})` : ""}`;
}

// Restyle one node in place (a live update); false when it moved or changed kind: redraw then.
export function patchNode(container, d) {
  const svg = container.querySelector("svg.map");
  const node = svg && svg.querySelector(`.node[data-dev-eui="${CSS.escape(d.dev_eui)}"]`);
  if (!node || node.dataset.kind !== d.kind || node.dataset.where !== whereOf(d)) return false;
  const { look, alarms, fill } = lookOf(d);
  node.setAttribute("fill", fill);
  node.setAttribute("class", `node ${d.kind} ${look}`);
  node.dataset.look = look;
  node.dataset.alarms = alarms.join(" ");
  node.querySelector("title").textContent = titleOf(d, look, alarms);
  const halo = svg.querySelector(`.halo[data-dev-eui="${CSS.escape(d.dev_eui)}"]`);
  if (alarms.length && !halo) {
    const ring = document.createElementNS(SVG_NS, "circle");
    const box = node.getBBox();
    const r = Number(node.dataset.r);
    ring.setAttribute("class", "halo");
    ring.dataset.devEui = d.dev_eui;
    ring.setAttribute("cx", box.x + box.width / 2);
    ring.setAttribute("cy", box.y + box.height / 2);
    ring.setAttribute("r", 2 * r);
    ring.setAttribute("stroke-width", (2.5 * r) / 7);
    svg.append(ring);
    svg.append(node); // alarms on top
  } else if (!alarms.length && halo) {
    halo.remove();
  }
  return true;
}

export function renderMap(container, devices, { tileUrl = "", attribution = "", onSelect } = {}) {
  const placed = devices.filter(
    (d) => typeof d.latitude === "number" && typeof d.longitude === "number",
  );
  const unplaced = devices.length - placed.length;
  if (!placed.length) {
    container.innerHTML = `<p class="empty">No node has a position yet${
      devices.length ? ` (${devices.length} registered without latitude/longitude)` : ""
    }.</p>`;
    return;
  }
  const width = Math.max(container.clientWidth, 300);
  const height = Math.max(container.clientHeight, 240);
  // fit: the integer zoom whose pixels make the fleet about the size of the box
  let [x0, y0] = [Infinity, Infinity];
  let [x1, y1] = [-Infinity, -Infinity];
  for (const d of placed) {
    const [x, y] = project(d.latitude, d.longitude, 0);
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const span = Math.max((x1 - x0) / width, (y1 - y0) / height, 1e-9);
  const zoom = Math.max(0, Math.min(19, Math.floor(Math.log2(0.85 / span))));
  const k = 2 ** zoom;
  const cx = ((x0 + x1) / 2) * k;
  const cy = ((y0 + y1) / 2) * k;
  const fitScale = Math.max(((x1 - x0) * k) / (width * 0.88), ((y1 - y0) * k) / (height * 0.88), 1 / 4);
  const vw = width * fitScale;
  const vh = height * fitScale;
  const vx = cx - vw / 2;
  const vy = cy - vh / 2;
  const unit = fitScale; // one screen pixel in viewBox units
  // drawn relative to the view's corner: Chromium renders SVG in float32, and Mercator pixels at
  // zoom 19 are ~1e8, where float32 loses whole pixels (markers jitter, clicks miss)
  const ox = Math.floor(vx);
  const oy = Math.floor(vy);

  const parts = [];
  parts.push(`<rect class="ground" x="${vx - ox}" y="${vy - oy}" width="${vw}" height="${vh}"/>`);
  if (tileUrl) {
    const tx0 = Math.floor(vx / TILE), tx1 = Math.floor((vx + vw) / TILE);
    const ty0 = Math.floor(vy / TILE), ty1 = Math.floor((vy + vh) / TILE);
    if ((tx1 - tx0 + 1) * (ty1 - ty0 + 1) <= MAX_TILES) {
      for (let tx = tx0; tx <= tx1; tx++) {
        for (let ty = ty0; ty <= ty1; ty++) {
          if (ty < 0 || ty >= k) continue;
          const wrapped = ((tx % k) + k) % k;
          const href = tileUrl.replace("{z}", zoom).replace("{x}", wrapped).replace("{y}", ty);
          parts.push(
            `<image class="tile" href="${esc(href)}" x="${tx * TILE - ox}" y="${ty * TILE - oy}" width="${TILE + 0.5}" height="${TILE + 0.5}"/>`,
          );
        }
      }
    }
  }
  // streets (or groups when a node has no street) as polylines through their nodes
  const lines = new Map();
  const points = new Map();
  for (const d of placed) {
    const [px, py] = project(d.latitude, d.longitude, zoom);
    const [x, y] = [px - ox, py - oy];
    points.set(d.dev_eui, [x, y]);
    const key = d.street || d.group;
    if (!key) continue;
    if (!lines.has(key)) lines.set(key, []);
    lines.get(key).push({ x, y });
  }
  const labels = [];
  for (const [name, pts] of [...lines].sort()) {
    if (pts.length < 2) continue;
    const ordered = alongStreet(pts);
    const path = ordered.map((p) => `${p.x.toFixed(2)},${p.y.toFixed(2)}`).join(" ");
    parts.push(
      `<polyline class="street" data-street="${esc(name)}" points="${path}" stroke-width="${5 * unit}"><title>${esc(name)}</title></polyline>`,
    );
    // the name beside the street's first node, drawn after every node with a halo, so no
    // marker hides it (and it does not take the markers' clicks)
    const first = ordered[0];
    labels.push(
      `<text class="street-name" x="${first.x}" y="${first.y - 14 * unit}" font-size="${11 * unit}" stroke-width="${3 * unit}">${esc(name)}</text>`,
    );
  }
  // layers: bins (squares), then lamps (smaller circles) above them so a lamp beside a bin
  // stays visible, then anything with an alarm on top
  const ordered = [...placed].sort((a, b) => {
    const rank = (d) => (lookOf(d).alarms.length ? 2 : d.kind === "lamp" ? 1 : 0);
    return rank(a) - rank(b);
  });
  for (const d of ordered) {
    const [x, y] = points.get(d.dev_eui);
    const { look, alarms, fill } = lookOf(d);
    const r = d.kind === "lamp" ? 5 * unit : 7 * unit;
    const title = titleOf(d, look, alarms);
    const attrs = `class="node ${esc(d.kind)} ${look}" data-dev-eui="${esc(d.dev_eui)}" data-kind="${esc(d.kind)}" data-where="${esc(whereOf(d))}" data-r="${r}" data-look="${look}" data-alarms="${alarms.join(" ")}" fill="${fill}" stroke-width="${1.5 * unit}" tabindex="0" role="link"`;
    if (alarms.length) {
      parts.push(`<circle class="halo" data-dev-eui="${esc(d.dev_eui)}" cx="${x}" cy="${y}" r="${r * 2}" stroke-width="${2.5 * unit}"/>`);
    }
    if (d.kind === "bin") {
      parts.push(`<rect ${attrs} x="${x - r}" y="${y - r}" width="${2 * r}" height="${2 * r}" rx="${2 * unit}"><title>${esc(title)}</title></rect>`);
    } else {
      parts.push(`<circle ${attrs} cx="${x}" cy="${y}" r="${r}"><title>${esc(title)}</title></circle>`);
    }
  }
  parts.push(...labels);
  container.innerHTML = `<svg xmlns="${SVG_NS}" class="map" data-zoom="${zoom}" data-ox="${ox}" data-oy="${oy}" data-unit="${unit}" viewBox="${vx - ox} ${vy - oy} ${vw} ${vh}" preserveAspectRatio="xMidYMid meet" role="img" aria-label="map of ${placed.length} nodes">${parts.join("")}</svg>${
    tileUrl && attribution ? `<div class="attribution">${esc(attribution)}</div>` : ""
  }${unplaced ? `<div class="unplaced">${unplaced} node(s) without a position</div>` : ""}`;
  const svg = container.querySelector("svg");
  const select = (event) => {
    const node = event.target.closest(".node");
    if (node && onSelect) onSelect(node.dataset.devEui);
  };
  svg.addEventListener("click", select);
  svg.addEventListener("keydown", (event) => {
    if (event.key === "Enter") select(event);
  });
}
