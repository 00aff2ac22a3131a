// Today's collection route (GET /api/v1/collection/route, gateway/routes.py) drawn over the map
// in map.js's own projection. Behind a toggle (remembered for the session): a gateway without a
// [routes] depot answers 422, and the page then says why instead of drawing.
import { api } from "./api.js";
import { project } from "./map.js";

const KEY = "citypack.route";
const SVG_NS = "http://www.w3.org/2000/svg";
const TRUCK_COLOURS = ["#1f6feb", "#8250df", "#bf3989", "#0a7d6e"];

const hm = (s) => `${Math.floor(s / 3600)}:${String(Math.round((s % 3600) / 60)).padStart(2, "0")} h`;

function summary(plan) {
  if (!plan.routes.length) return "no bin needs emptying before the next round";
  const trucks = plan.routes.map(
    (r) => `truck ${r.truck}: ${r.stops.length} bin${r.stops.length === 1 ? "" : "s"}, ${r.km.toFixed(1)} km, ${hm(r.duration_s)}`,
  );
  const left = plan.unassigned.length ? `; ${plan.unassigned.length} not routed` : "";
  return `${trucks.join("; ")}${left} (${plan.distances.replace("_", " ")})`;
}

// Adds the toggle under the map in `box`; returns { redraw } for after every map repaint.
export function routeLayer(box, mapEl) {
  const bar = document.createElement("div");
  bar.className = "route-bar";
  bar.innerHTML = `<label class="toggle"><input type="checkbox" id="route-toggle"> today's route</label> <span id="route-note" class="route-note" role="status"></span>`;
  box.append(bar);
  const toggle = bar.querySelector("#route-toggle");
  const note = bar.querySelector("#route-note");
  toggle.checked = sessionStorage.getItem(KEY) === "on";
  let plan = null;

  function draw() {
    const svg = mapEl.querySelector("svg.map");
    if (!svg) return;
    for (const old of svg.querySelectorAll(".route, .route-stop")) old.remove();
    if (!toggle.checked || !plan) return;
    const zoom = Number(svg.dataset.zoom);
    const [ox, oy, unit] = [Number(svg.dataset.ox), Number(svg.dataset.oy), Number(svg.dataset.unit)];
    const at = (lat, lon) => {
      const [x, y] = project(lat, lon, zoom);
      return [x - ox, y - oy];
    };
    const under = svg.querySelector(".halo, .node"); // the route goes under the nodes
    for (const route of plan.routes) {
      const colour = TRUCK_COLOURS[(route.truck - 1) % TRUCK_COLOURS.length];
      const line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("class", "route");
      line.dataset.truck = String(route.truck);
      line.setAttribute(
        "points",
        route.geometry.coordinates.map(([lon, lat]) => at(lat, lon).map((v) => v.toFixed(2)).join(",")).join(" "),
      );
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", colour);
      line.setAttribute("stroke-width", String(3 * unit));
      line.setAttribute("stroke-linejoin", "round");
      line.setAttribute("stroke-opacity", "0.8");
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = `truck ${route.truck}: ${route.stops.length} bins, ${route.km.toFixed(1)} km`;
      line.append(title);
      svg.insertBefore(line, under);
      route.stops.forEach((stop, i) => {
        const [x, y] = at(stop.latitude, stop.longitude);
        const label = document.createElementNS(SVG_NS, "text");
        label.setAttribute("class", "route-stop");
        label.dataset.devEui = stop.dev_eui;
        label.dataset.truck = String(route.truck);
        label.setAttribute("x", String(x + 9 * unit));
        label.setAttribute("y", String(y - 9 * unit));
        label.setAttribute("font-size", String(11 * unit));
        label.setAttribute("fill", colour);
        label.textContent = String(i + 1);
        svg.append(label);
      });
    }
  }

  async function load() {
    note.textContent = "planning ...";
    try {
      plan = await api("/collection/route");
      note.textContent = summary(plan);
    } catch (error) {
      plan = null;
      note.textContent = `no route: ${error.message}`;
    }
    draw();
  }

  toggle.addEventListener("change", () => {
    sessionStorage.setItem(KEY, toggle.checked ? "on" : "off");
    if (toggle.checked) load();
    else {
      note.textContent = "";
      draw();
    }
  });
  if (toggle.checked) load();
  return { redraw: draw, reload: () => toggle.checked && load() };
}
