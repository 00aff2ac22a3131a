// The device list: every registered node with search (name, devEui, street, group) and filters
// (kind, street, group, availability, alarm), live from the stream; the filters live in the URL
// (#/devices?kind=lamp&alarm=yes) so a filtered list can be bookmarked or shared.
import { alarmsOf, esc, fillOf, fmtAgo, label, lookOf, state, subscribe } from "./model.js";

const FILTERS = ["q", "kind", "street", "group", "availability", "alarm"];

function readQuery() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  return Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""]));
}

function writeQuery(values) {
  const query = new URLSearchParams();
  for (const name of FILTERS) if (values[name]) query.set(name, values[name]);
  const text = query.toString();
  history.replaceState(null, "", `#/devices${text ? `?${text}` : ""}`);
}

export function matches(device, f) {
  const alarms = alarmsOf(device);
  if (f.kind && device.kind !== f.kind) return false;
  if (f.street && device.street !== f.street) return false;
  if (f.group && device.group !== f.group) return false;
  if (f.availability && device.availability !== f.availability) return false;
  if (f.alarm === "yes" && !alarms.length) return false;
  if (f.alarm === "no" && alarms.length) return false;
  if (f.alarm && !["yes", "no"].includes(f.alarm) && !alarms.includes(f.alarm)) return false;
  if (f.q) {
    const text = `${device.name} ${device.dev_eui} ${device.street} ${device.group}`.toLowerCase();
    if (!f.q.toLowerCase().split(/\s+/).every((word) => text.includes(word))) return false;
  }
  return true;
}

function reading(device) {
  if (device.kind === "bin") {
    const fill = fillOf(device);
    return fill === null ? "—" : `${fill}% full`;
  }
  const level = device.reported?.dim_level;
  return typeof level === "number" ? (level ? `lit ${level}%` : "off") : "—";
}

function options(values, chosen, all) {
  return [`<option value="">${esc(all)}</option>`]
    .concat(values.map((v) => `<option value="${esc(v)}"${v === chosen ? " selected" : ""}>${esc(v)}</option>`))
    .join("");
}

export function renderDevices(main) {
  const f = readQuery();
  const devices = () => [...state.devices.values()];
  const distinct = (key) => [...new Set(devices().map((d) => d[key]).filter(Boolean))].sort();
  main.innerHTML = `<section class="page devices-page">
<h1>Devices <small id="count"></small></h1>
<form id="filters" class="card filters" role="search">
  <label class="search">Search<input type="search" name="q" placeholder="name, devEui, street, group" value="${esc(f.q)}"></label>
  <label>Kind<select name="kind">${options(["bin", "lamp"], f.kind, "any kind")}</select></label>
  <label>Street<select name="street">${options(distinct("street"), f.street, "any street")}</select></label>
  <label>Group<select name="group">${options(distinct("group"), f.group, "any group")}</select></label>
  <label>Availability<select name="availability">${options(["online", "offline", "unknown"], f.availability, "any")}</select></label>
  <label>Alarm<select name="alarm">${options(["yes", "no", "fire", "tilt", "sensor_fault", "lamp_failure", "day_burner"], f.alarm, "any")}</select></label>
</form>
<div class="card"><div id="device-list"></div></div>
</section>`;
  const form = main.querySelector("#filters");
  const list = main.querySelector("#device-list");
  const paint = () => {
    const values = Object.fromEntries(FILTERS.map((name) => [name, form.elements[name].value.trim()]));
    const all = devices();
    const shown = all.filter((d) => matches(d, values)).sort((a, b) => label(a).localeCompare(label(b)));
    main.querySelector("#count").textContent = `${shown.length} of ${all.length}`;
    list.innerHTML = shown.length
      ? `<table class="devices"><thead><tr><th>Name</th><th>Kind</th><th>Street</th><th>Group</th><th>Now</th><th>Availability</th><th>Alarms</th><th>Last heard</th></tr></thead><tbody>${shown
          .slice(0, 2000)
          .map((d) => {
            const { fill } = lookOf(d);
            const alarms = alarmsOf(d);
            return `<tr data-dev-eui="${esc(d.dev_eui)}"><td><span class="dot" style="background:${fill}"></span><a href="#/device/${esc(d.dev_eui)}">${esc(label(d))}</a><br><small><code>${esc(d.dev_eui)}</code></small></td><td>${esc(d.kind)}</td><td>${esc(d.street)}</td><td>${esc(d.group)}</td><td>${esc(reading(d))}</td><td><span class="badge ${esc(d.availability)}">${esc(d.availability)}</span></td><td>${alarms.map((a) => `<span class="badge failed">${esc(a)}</span>`).join(" ")}</td><td>${esc(fmtAgo(d.last_seen))}</td></tr>`;
          })
          .join("")}</tbody></table>`
      : `<p class="empty">No device matches.</p>`;
    return values;
  };
  const onChange = () => writeQuery(paint());
  form.addEventListener("input", onChange);
  form.addEventListener("change", onChange);
  form.addEventListener("submit", (event) => event.preventDefault());
  paint();
  let frame = null;
  return subscribe((kind) => {
    if ((kind === "device" || kind === "devices") && frame === null) {
      frame = requestAnimationFrame(() => ((frame = null), paint()));
    }
  });
}
