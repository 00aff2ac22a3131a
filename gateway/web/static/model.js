// The page's picture of the fleet: devices from GET /api/v1/devices, kept current by the stream.
import { api } from "./api.js";

export const ALARM_EVENTS = new Set([
  "bin_fire",
  "bin_tilt",
  "bin_sensor_fault",
  "bin_full",
  "lamp_failure",
  "lamp_day_burner",
  "device_offline",
  "chirpstack_log",
  "command_failed",
  "command_expired",
  "command_rejected",
]);

// Colours of the map markers (the browser tests check them; keep in step with tests/web).
export const COLOURS = {
  offline: "#9aa0a6",
  nodata: "#c7d0db",
  bin_empty: "#2e9e5b",
  bin_filling: "#e0a526",
  bin_full: "#e0651b",
  bin_alarm: "#c4162a",
  lamp_dark: "#2f3b52",
  lamp_low: "#7d6b2c", // 1–39 %
  lamp_mid: "#e3c04a", // 40–79 %
  lamp_high: "#fff36b", // 80–100 %
  lamp_failure: "#c4162a",
};

export const state = {
  devices: new Map(),
  events: [], // newest first, bounded
  listeners: new Set(),
  serverOffset: 0, // gateway clock minus browser clock
  // GET /api/v1/web/config: the city's time zone, and the demo's simulated clock (or null)
  config: { timezone: "UTC", sim_clock: null, tile_url: "", tile_attribution: "" },
};

export async function loadConfig() {
  const doc = await api("/web/config");
  state.config = { ...state.config, ...doc };
  formatter = null;
  emit("config", null);
}

const MAX_EVENTS = 300;

export function emit(kind, payload) {
  for (const listener of state.listeners) {
    try {
      listener(kind, payload);
    } catch (error) {
      console.error(error);
    }
  }
}

export function subscribe(listener) {
  state.listeners.add(listener);
  return () => state.listeners.delete(listener);
}

export async function loadDevices() {
  const doc = await api("/devices?limit=100000");
  state.devices = new Map(doc.devices.map((d) => [d.dev_eui, d]));
  emit("devices", null);
}

export async function loadEvents() {
  const doc = await api("/events?limit=200");
  state.events = doc.events;
  emit("events", null);
}

export function onStream(type, doc) {
  if (type === "hello") {
    state.serverOffset = doc.at * 1000 - Date.now();
    emit("clock", null); // "today" is the gateway's (or the simulated) day, not the browser's
  } else if (type === "device") {
    state.devices.set(doc.dev_eui, doc);
    emit("device", doc);
  } else if (type === "event") {
    state.events.unshift(doc);
    if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
    emit("event", doc);
  } else if (type === "lagged") {
    loadDevices().catch(() => {});
    loadEvents().catch(() => {});
  }
}

export const gatewayNow = () => (Date.now() + state.serverOffset) / 1000;

// a gateway timestamp as the city sees it: itself, or on the demo's simulated clock
export function displayTime(seconds) {
  const sim = state.config.sim_clock;
  return sim ? sim.epoch + (seconds - sim.wall_start) * sim.speed : seconds;
}

export const now = () => displayTime(gatewayNow());

export function fillOf(device) {
  const derived = device.derived || {};
  const reported = device.reported || {};
  const fill = derived.fill_percent ?? reported.fill_percent;
  return typeof fill === "number" ? fill : null;
}

export function alarmsOf(device) {
  const d = device.derived || {};
  const r = device.reported || {};
  const out = [];
  if (device.kind === "bin") {
    if (d.fire) out.push("fire");
    if (d.tilt) out.push("tilt");
    if (d.sensor_fault) out.push("sensor_fault");
  } else if (device.kind === "lamp") {
    if (d.lamp_failure || r.lamp_failure) out.push("lamp_failure");
    if (d.day_burner || r.day_burner) out.push("day_burner");
  }
  return out;
}

// One word for a node's look on the map; `fill` is its colour.
export function lookOf(device) {
  const alarms = alarmsOf(device);
  let look;
  if (device.availability === "offline") {
    look = "offline";
  } else if (device.kind === "bin") {
    const fill = fillOf(device);
    const threshold = device.derived?.full_threshold_percent ?? 80;
    if (alarms.length) look = "alarm";
    else if (fill === null) look = "nodata";
    else if (device.derived?.full || fill >= threshold) look = "full";
    else if (fill >= 50) look = "filling";
    else look = "empty";
  } else if (device.kind === "lamp") {
    const level = device.reported?.dim_level;
    if (alarms.length) look = "failure";
    else if (typeof level !== "number") look = "nodata";
    else if (level === 0) look = "dark";
    else look = "lit";
  } else {
    look = "nodata";
  }
  return { look, alarms, fill: colourOf(device, look) };
}

function colourOf(device, look) {
  if (look === "offline" || look === "nodata") return COLOURS[look];
  if (device.kind === "bin") return COLOURS[`bin_${look}`];
  if (look === "lit") return lampColour(device.reported.dim_level);
  return COLOURS[`lamp_${look}`];
}

export function lampColour(level) {
  if (level <= 0) return COLOURS.lamp_dark;
  return level >= 80 ? COLOURS.lamp_high : level >= 40 ? COLOURS.lamp_mid : COLOURS.lamp_low;
}

export function esc(value) {
  return String(value ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

let formatter = null;

// ISO 8601 date and 24-hour time in the configured zone: {date: "2026-03-02", time: "10:15:42"}
export function isoParts(displaySeconds) {
  if (formatter === null) {
    formatter = new Intl.DateTimeFormat("en-CA", {
      timeZone: state.config.timezone || "UTC",
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    });
  }
  const p = Object.fromEntries(formatter.formatToParts(new Date(displaySeconds * 1000)).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour}:${p.minute}:${p.second}` };
}

// a gateway timestamp: "10:15:42" today, "2026-03-02 10:15:42" on another day
export function fmtTime(seconds) {
  if (typeof seconds !== "number") return "—";
  const at = isoParts(displayTime(seconds));
  return at.date === isoParts(now()).date ? at.time : `${at.date} ${at.time}`;
}

export function fmtAgo(seconds) {
  if (typeof seconds !== "number") return "never";
  const ago = Math.max(0, now() - displayTime(seconds));
  if (ago < 90) return `${Math.round(ago)} s ago`;
  if (ago < 5400) return `${Math.round(ago / 60)} min ago`;
  if (ago < 129600) return `${Math.round(ago / 3600)} h ago`;
  return `${Math.round(ago / 86400)} d ago`;
}

export function label(device) {
  return device.name || device.dev_eui;
}

export function describeEvent(event) {
  const d = event.data || {};
  switch (event.type) {
    case "bin_full":
      return `full at ${d.fill_percent}% (threshold ${d.threshold_percent}%)`;
    case "bin_fire":
      return `fire: ${d.temperature_c ?? "?"} °C (${d.source || ""})`;
    case "bin_tilt":
      return `tilted${d.tilt_deg !== undefined ? ` ${d.tilt_deg}°` : ""}`;
    case "bin_pickup":
      return `emptied: ${d.fill_before}% → ${d.fill_percent}%`;
    case "lamp_failure":
      return `failure: ${(d.reasons || []).join(", ")}`;
    case "lamp_day_burner":
      return `burning by day at ${d.dim_level}% (${d.active_power_w} W)`;
    default:
      if (event.type.startsWith("command_")) {
        return `${d.message || "command"} ${event.type.slice(8)}${d.error ? `: ${d.error}` : ""}`;
      }
      return Object.entries(d)
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
        .join(" ");
  }
}
