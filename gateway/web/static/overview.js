// The overview: the map, bins to empty today, alarms and events as they arrive, silent nodes.
import { api, download } from "./api.js";
import { patchNode, renderMap } from "./map.js";
import { routeLayer } from "./route.js";
import {
  ALARM_EVENTS, COLOURS, describeEvent, esc, fmtAgo, fmtTime, isoParts, label, lookOf, now, state,
  subscribe,
} from "./model.js";

// the collection horizon in the gateway's own hours: until midnight in the city, which on the
// demo's simulated clock passes `speed` times faster than the gateway's
function hoursLeftToday() {
  const t = now();
  const { time } = isoParts(t);
  const [h, m, sec] = time.split(":").map(Number);
  const left = (24 * 3600 - (h * 3600 + m * 60 + sec)) / 3600;
  const speed = state.config.sim_clock?.speed || 1;
  return Math.max(0.01, left / speed);
}

function eventRow(event) {
  const device = state.devices.get(event.dev_eui);
  const alarm = ALARM_EVENTS.has(event.type);
  return `<li class="event ${alarm ? "alarm" : ""}" data-type="${esc(event.type)}" data-dev-eui="${esc(event.dev_eui)}"><time>${esc(fmtTime(event.at))}</time> <a href="#/device/${esc(event.dev_eui)}">${esc(device ? label(device) : event.dev_eui)}</a> <b>${esc(event.type)}</b> <span>${esc(describeEvent(event))}</span></li>`;
}

export function renderOverview(main) {
  main.innerHTML = `<section class="page overview">
<div class="tiles" id="tiles"></div>
<div class="mapbox card"><div id="map" class="mapwrap"></div><div class="legend" id="legend"></div></div>
<div class="card" id="collection-card"><h2>Bins to empty today</h2>
  <div class="actions"><button type="button" class="small" id="csv">CSV</button><button type="button" class="small" id="geojson">GeoJSON</button></div>
  <div id="collection"></div></div>
<div class="card"><h2>Alarms and events <label class="toggle"><input type="checkbox" id="alarms-only" checked> alarms only</label></h2><ul id="events" class="events"></ul></div>
<div class="card"><h2>Silent nodes</h2><div id="silent"></div></div>
</section>`;
  const mapEl = main.querySelector("#map");
  const onlyAlarms = main.querySelector("#alarms-only");

  const route = routeLayer(main.querySelector(".mapbox"), mapEl); // issue 21: today's route
  const paintMap = () => {
    renderMap(mapEl, [...state.devices.values()], {
      tileUrl: state.config.tile_url || "",
      attribution: state.config.tile_attribution || "",
      onSelect: (eui) => (location.hash = `#/device/${eui}`),
    });
    route.redraw();
  };

  const paintTiles = () => {
    const devices = [...state.devices.values()];
    const count = (pred) => devices.filter(pred).length;
    const looks = devices.map(lookOf);
    const tiles = [
      ["nodes", devices.length],
      ["online", count((d) => d.availability === "online")],
      ["offline", count((d) => d.availability === "offline")],
      ["bins full", looks.filter((l, i) => devices[i].kind === "bin" && l.look === "full").length],
      ["alarms", looks.filter((l) => l.alarms.length).length],
      ["lamps lit", looks.filter((l, i) => devices[i].kind === "lamp" && l.look === "lit").length],
    ];
    main.querySelector("#tiles").innerHTML = tiles
      .map(([name, n]) => `<div class="tile" data-tile="${name}"><b>${n}</b><span>${name}</span></div>`)
      .join("");
  };

  const paintLegend = () => {
    const item = (cls, fill, text, shape = "circle") =>
      `<span class="key"><svg viewBox="0 0 12 12" width="12" height="12">${
        shape === "rect" ? `<rect x="1" y="1" width="10" height="10" rx="2" fill="${fill}"/>` : `<circle cx="6" cy="6" r="5" fill="${fill}"/>`
      }</svg>${text}</span>`;
    main.querySelector("#legend").innerHTML = [
      item("", COLOURS.bin_empty, "bin &lt;50%", "rect"),
      item("", COLOURS.bin_filling, "bin ≥50%", "rect"),
      item("", COLOURS.bin_full, "bin full", "rect"),
      item("", COLOURS.bin_alarm, "alarm", "rect"),
      item("", COLOURS.lamp_high, "lamp 80–100%"),
      item("", COLOURS.lamp_mid, "lamp 40–79%"),
      item("", COLOURS.lamp_low, "lamp 1–39%"),
      item("", COLOURS.lamp_dark, "lamp off"),
      item("", COLOURS.offline, "offline"),
    ].join("");
  };

  const paintEvents = () => {
    const list = state.events.filter((e) => !onlyAlarms.checked || ALARM_EVENTS.has(e.type)).slice(0, 100);
    main.querySelector("#events").innerHTML = list.length
      ? list.map(eventRow).join("")
      : `<li class="empty">Nothing yet.</li>`;
  };

  const paintSilent = () => {
    const silent = [...state.devices.values()]
      .filter((d) => d.availability === "offline" || (d.availability === "unknown" && d.registered))
      .sort((a, b) => (a.last_seen ?? 0) - (b.last_seen ?? 0));
    main.querySelector("#silent").innerHTML = silent.length
      ? `<table><thead><tr><th>Node</th><th>Kind</th><th>Street</th><th>Last heard</th></tr></thead><tbody>${silent
          .map(
            (d) =>
              `<tr data-dev-eui="${esc(d.dev_eui)}"><td><a href="#/device/${esc(d.dev_eui)}">${esc(label(d))}</a></td><td>${esc(d.kind)}</td><td>${esc(d.street)}</td><td>${esc(d.availability === "unknown" ? "never" : fmtAgo(d.last_seen))}</td></tr>`,
          )
          .join("")}</tbody></table>`
      : `<p class="empty">Every node has been heard recently.</p>`;
  };

  let collectionTimer = null;
  const paintCollection = async () => {
    collectionTimer = null;
    const box = main.querySelector("#collection");
    if (!box) return;
    try {
      const doc = await api(`/collection?horizon_h=${hoursLeftToday().toFixed(2)}`);
      box.innerHTML = doc.bins.length
        ? `<table><thead><tr><th>Bin</th><th>Street</th><th>Fill</th><th>Full at</th></tr></thead><tbody>${doc.bins
            .map(
              (b) =>
                `<tr data-dev-eui="${esc(b.dev_eui)}" class="${esc(b.reason)}"><td><a href="#/device/${esc(b.dev_eui)}">${esc(b.name || b.dev_eui)}</a>${b.fire ? ' <span class="badge failed">fire</span>' : ""}${b.tilt ? ' <span class="badge failed">tilt</span>' : ""}</td><td>${esc(b.street)}</td><td>${esc(b.fill_percent)}%</td><td>${b.reason === "full" ? "now" : esc(fmtTime(b.forecast_full_at))}</td></tr>`,
            )
            .join("")}</tbody></table>`
        : `<p class="empty">No bin needs emptying today.</p>`;
    } catch (error) {
      box.textContent = `could not load the collection list: ${error.message}`;
    }
  };
  const scheduleCollection = () => {
    if (collectionTimer === null) collectionTimer = setTimeout(paintCollection, 1000);
  };
  const exportAs = (format, ext) => () =>
    download(`/collection?format=${format}&horizon_h=${hoursLeftToday().toFixed(2)}`, `collection.${ext}`).catch(
      (error) => alert(error.message),
    );
  main.querySelector("#csv").addEventListener("click", exportAs("csv", "csv"));
  main.querySelector("#geojson").addEventListener("click", exportAs("geojson", "geojson"));
  onlyAlarms.addEventListener("change", paintEvents);

  // live updates restyle the changed nodes in place; a new, moved or re-kinded node redraws all
  let redraw = true;
  const changed = new Set();
  const paintAll = () => {
    paintTiles();
    const patched =
      !redraw && [...changed].every((eui) => state.devices.has(eui) && patchNode(mapEl, state.devices.get(eui)));
    if (!patched) paintMap();
    redraw = false;
    changed.clear();
    paintSilent();
  };
  let frame = null;
  const schedule = (eui = null) => {
    if (eui === null) redraw = true;
    else changed.add(eui);
    if (frame === null) frame = requestAnimationFrame(() => ((frame = null), paintAll()));
  };
  paintAll();
  paintLegend();
  redraw = false;
  paintEvents();
  paintCollection();
  const onResize = () => schedule();
  window.addEventListener("resize", onResize);
  const unsubscribe = subscribe((kind, payload) => {
    if (["event", "events", "config", "clock"].includes(kind)) paintEvents();
    if (kind === "config") schedule();
    if (kind === "device" || kind === "devices") {
      schedule(kind === "device" ? payload.dev_eui : null);
      if (!payload || payload.kind === "bin") scheduleCollection();
    }
  });
  return () => {
    unsubscribe();
    window.removeEventListener("resize", onResize);
    if (collectionTimer !== null) clearTimeout(collectionTimer);
  };
}
