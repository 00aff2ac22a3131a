// Small inline-SVG line charts of a value over time (no chart library).
import { esc, fmtTime } from "./model.js";

const W = 320;
const H = 120;
const PAD = { l: 36, r: 8, t: 18, b: 20 };

export function lineChart(title, unit, points, { min, max, colour = "#3b6fb6" } = {}) {
  const pts = points.filter(([t, v]) => typeof t === "number" && typeof v === "number");
  if (!pts.length) {
    return `<figure class="chart empty" data-chart="${esc(title)}"><figcaption>${esc(title)}</figcaption><p>no data yet</p></figure>`;
  }
  const t0 = pts[0][0];
  const t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
  // readings stamped within one second (a burst, a paused clock): spread them in arrival order
  const byIndex = pts.length > 1 && pts[pts.length - 1][0] - t0 < 1;
  let lo = min ?? Math.min(...pts.map((p) => p[1]));
  let hi = max ?? Math.max(...pts.map((p) => p[1]));
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const xt = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const xi = (i) => PAD.l + (i / Math.max(1, pts.length - 1)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - ((v - lo) / (hi - lo)) * (H - PAD.t - PAD.b);
  const x = (t, i) => (byIndex ? xi(i) : xt(t));
  const path = pts.map(([t, v], i) => `${x(t, i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const last = pts[pts.length - 1][1];
  const dots =
    pts.length <= 60
      ? pts.map(([t, v], i) => `<circle cx="${x(t, i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2"/>`).join("")
      : "";
  return `<figure class="chart" data-chart="${esc(title)}" data-points="${pts.length}">
<figcaption>${esc(title)} <b>${esc(+last.toFixed(2))}${esc(unit)}</b></figcaption>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)} over time">
<line class="axis" x1="${PAD.l}" y1="${H - PAD.b}" x2="${W - PAD.r}" y2="${H - PAD.b}"/>
<line class="axis" x1="${PAD.l}" y1="${PAD.t}" x2="${PAD.l}" y2="${H - PAD.b}"/>
<text x="${PAD.l - 4}" y="${PAD.t + 4}" text-anchor="end">${esc(+hi.toFixed(1))}</text>
<text x="${PAD.l - 4}" y="${H - PAD.b}" text-anchor="end">${esc(+lo.toFixed(1))}</text>
<text x="${PAD.l}" y="${H - 4}">${esc(fmtTime(t0))}</text>
<text x="${W - PAD.r}" y="${H - 4}" text-anchor="end">${esc(fmtTime(t1))}</text>
<polyline points="${path}" stroke="${colour}"/>
<g fill="${colour}">${dots}</g>
</svg></figure>`;
}
