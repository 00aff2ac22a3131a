// Sending commands (one device, a street or a group = one POST per device) and tracking each
// one from queued to applied / failed / expired, live from the stream's command_* events; the
// fleet's active and recent commands (GET /api/v1/commands), filtered by state, with a cancel
// for those still in the gateway's queue (POST /api/v1/commands/{id}/cancel).
import { api } from "./api.js";
import { esc, fmtTime, label, state, subscribe } from "./model.js";

export const MESSAGES = {
  lamp_override: {
    kind: "lamp",
    fields: [
      ["dim_level", "Level %", 0, 100, 100],
      ["duration_s", "Hold for s (0 = until next)", 0, 86400, 3600],
      ["fade_s", "Fade s", 0, 255, 2],
    ],
  },
  lamp_profile: {
    kind: "lamp",
    fields: [
      ["base_level", "Base level %", 0, 100, 60],
      ["boost_level", "Boost level %", 0, 100, 100],
      ["hold_time_s", "Boost hold s", 0, 3600, 60],
    ],
    steps: true,
    versioned: true,
  },
  bin_config: {
    kind: "bin",
    fields: [
      ["container_height_cm", "Container height cm", 20, 400, 100],
      ["sensor_offset_cm", "Sensor offset cm", 0, 100, 30],
      ["full_threshold_percent", "Full at %", 10, 100, 80],
      ["fire_threshold_c", "Fire at °C", 40, 125, 70],
      ["report_interval_s", "Report every s", 300, 86400, 3600],
      ["fill_step_percent", "Extra report on fill step %", 1, 50, 10],
    ],
    versioned: true,
  },
};

const DEFAULT_STEPS = '[{"anchor": "sunset", "offset_min": 0, "dim_level": 100},\n {"anchor": "clock", "offset_min": 1380, "dim_level": 40},\n {"anchor": "sunrise", "offset_min": 0, "dim_level": 0}]';

// commands this page sent, newest first: {id, dev_eui, message, state, error, at}
export const tracked = [];
const trackedById = new Map();
const early = new Map(); // command events seen before the POST that made the command returned

function advance(row, event) {
  const next = event.type.slice("command_".length);
  row.state = next;
  if (row.history[row.history.length - 1] !== next) row.history.push(next);
  row.error = event.data.error || row.error;
}

export function commandForm(message, idPrefix = "cmd") {
  const spec = MESSAGES[message];
  const inputs = spec.fields
    .map(
      ([name, text, lo, hi, value]) =>
        `<label>${esc(text)}<input type="number" name="${name}" id="${idPrefix}-${name}" min="${lo}" max="${hi}" value="${value}" required></label>`,
    )
    .join("");
  const steps = spec.steps
    ? `<label class="wide">Steps (JSON, up to 4)<textarea name="steps" rows="4">${esc(DEFAULT_STEPS)}</textarea></label>`
    : "";
  return inputs + steps;
}

export function readFields(form, message) {
  const spec = MESSAGES[message];
  const fields = {};
  for (const [name] of spec.fields) {
    const input = form.elements[name];
    if (input && input.value !== "") fields[name] = Number(input.value);
  }
  if (spec.steps) {
    const text = form.elements.steps.value.trim();
    fields.steps = text ? JSON.parse(text) : [];
  }
  return fields;
}

function nextVersion(device) {
  const versions = [device.desired_version, device.reported_version].filter((v) => typeof v === "number");
  return ((versions.length ? Math.max(...versions) : 0) + 1) % 65536;
}

export async function send(devices, message, fields) {
  const results = [];
  for (const device of devices) {
    const body = { message, fields: { ...fields } };
    if (MESSAGES[message]?.versioned) body.fields.config_version = nextVersion(device);
    try {
      const command = await api(`/devices/${device.dev_eui}/commands`, { method: "POST", body });
      track(command);
      results.push({ device, command });
    } catch (error) {
      results.push({ device, error: error.message });
    }
  }
  return results;
}

export function track(command) {
  if (trackedById.has(command.id)) return;
  const row = {
    id: command.id,
    dev_eui: command.dev_eui,
    message: command.message,
    state: command.state,
    error: command.error || "",
    at: command.created_at,
    history: [command.state],
  };
  tracked.unshift(row);
  trackedById.set(row.id, row);
  for (const event of early.get(row.id) || []) advance(row, event);
  early.delete(row.id);
  if (tracked.length > 200) trackedById.delete(tracked.pop().id);
}

// live: every command_<state> event updates its row
subscribe((kind, event) => {
  if (kind !== "event" || !event.type.startsWith("command_")) return;
  const id = event.data?.id;
  const row = trackedById.get(id);
  if (row) {
    advance(row, event);
  } else if (id) {
    early.set(id, [...(early.get(id) || []), event]);
    if (early.size > 500) early.delete(early.keys().next().value);
  }
});

export function commandRows(rows) {
  if (!rows.length) return `<p class="empty">No commands yet.</p>`;
  return `<table class="commands"><thead><tr><th>Device</th><th>Command</th><th>State</th><th>Since</th></tr></thead><tbody>${rows
    .map((c) => {
      const device = state.devices.get(c.dev_eui);
      return `<tr data-command-id="${esc(c.id)}" data-state="${esc(c.state)}"><td><a href="#/device/${esc(c.dev_eui)}">${esc(device ? label(device) : c.dev_eui)}</a></td><td>${esc(c.message)}</td><td><span class="badge ${esc(c.state)}">${esc(c.state)}</span>${c.history ? `<small> ${esc(c.history.join(" → "))}</small>` : ""}${c.error ? `<small class="error"> ${esc(c.error)}</small>` : ""}</td><td>${esc(fmtTime(c.at))}</td></tr>`;
    })
    .join("")}</tbody></table>`;
}

export function renderCommands(main) {
  const devices = [...state.devices.values()];
  const streets = [...new Set(devices.map((d) => d.street).filter(Boolean))].sort();
  const groups = [...new Set(devices.map((d) => d.group).filter(Boolean))].sort();
  main.innerHTML = `<section class="page commands-page">
<h1>Commands</h1>
<form id="send" class="card">
  <div class="row">
    <label>Command<select name="message">${Object.keys(MESSAGES).map((m) => `<option>${m}</option>`).join("")}</select></label>
    <label>Send to<select name="scope"><option value="device">one device</option><option value="street">a street</option><option value="group">a group</option></select></label>
    <label>Target<select name="target"></select></label>
  </div>
  <div class="row fields"></div>
  <div class="row"><button type="submit">Send</button><output name="result"></output></div>
</form>
<div class="card"><h2>Sent from this page</h2><div id="tracked"></div></div>
<div class="card"><h2>The fleet's commands
  <label class="toggle">state <select id="fleet-state">
    <option value="active">active (queued, sent, acknowledged)</option><option value="">all recent</option>
    ${FLEET_STATES.map((s) => `<option>${s}</option>`).join("")}
  </select></label></h2>
  <p class="empty">queued: in the gateway's or ChirpStack's queue · sent: on the air · acknowledged: the node's radio confirmed · applied: the node did it. Only a command still in the gateway's queue can be cancelled.</p>
  <output id="fleet-result"></output><div id="fleet"></div></div>
</section>`;
  const form = main.querySelector("#send");
  const refreshTargets = () => {
    const kind = MESSAGES[form.message.value].kind;
    const scope = form.scope.value;
    let options;
    if (scope === "device") {
      options = devices
        .filter((d) => d.kind === kind)
        .sort((a, b) => label(a).localeCompare(label(b)))
        .map((d) => [d.dev_eui, `${label(d)} (${d.dev_eui})`]);
    } else {
      const names = scope === "street" ? streets : groups;
      options = names
        .map((n) => [n, `${n} — ${devices.filter((d) => d.kind === kind && d[scope] === n).length} ${kind}s`]);
    }
    form.target.innerHTML = options.map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join("");
  };
  const refreshFields = () => {
    form.querySelector(".fields").innerHTML = commandForm(form.message.value);
    refreshTargets();
  };
  form.message.addEventListener("change", refreshFields);
  form.scope.addEventListener("change", refreshTargets);
  refreshFields();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = form.message.value;
    const kind = MESSAGES[message].kind;
    const scope = form.scope.value;
    const target = form.target.value;
    const chosen = [...state.devices.values()].filter(
      (d) => d.kind === kind && (scope === "device" ? d.dev_eui === target : d[scope] === target),
    );
    let fields;
    try {
      fields = readFields(form, message);
    } catch (error) {
      form.result.value = `steps: ${error.message}`;
      return;
    }
    if (!chosen.length) {
      form.result.value = "no device to send to";
      return;
    }
    form.result.value = `sending to ${chosen.length} device(s)…`;
    const results = await send(chosen, message, fields);
    const failed = results.filter((r) => r.error);
    form.result.value = `${results.length - failed.length} queued${failed.length ? `, ${failed.length} refused: ${failed[0].error}` : ""}`;
    paint();
  });
  const list = main.querySelector("#tracked");
  const paint = () => {
    list.innerHTML = commandRows(tracked);
  };
  paint();

  const fleetBox = main.querySelector("#fleet");
  const fleetState = main.querySelector("#fleet-state");
  const fleetResult = main.querySelector("#fleet-result");
  let fleetTimer = null;
  const paintFleet = async () => {
    fleetTimer = null;
    const query = fleetState.value ? `?state=${encodeURIComponent(fleetState.value)}&limit=200` : "?limit=200";
    try {
      const doc = await api(`/commands${query}`);
      fleetBox.innerHTML = fleetRows(doc.commands);
    } catch (error) {
      fleetBox.innerHTML = `<p class="error">${esc(error.message)}</p>`;
    }
  };
  const scheduleFleet = () => {
    if (fleetTimer === null) fleetTimer = setTimeout(paintFleet, 800);
  };
  fleetState.addEventListener("change", paintFleet);
  fleetBox.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-cancel]");
    if (!button) return;
    button.disabled = true;
    try {
      const command = await api(`/commands/${button.dataset.cancel}/cancel`, { method: "POST" });
      fleetResult.value = `cancelled ${command.message} to ${command.dev_eui}`;
    } catch (error) {
      fleetResult.value = `not cancelled: ${error.message}`;
    }
    paintFleet();
  });
  paintFleet();
  const unsubscribe = subscribe((kind, event) => {
    if (kind === "event" && event.type.startsWith("command_")) {
      paint();
      scheduleFleet();
    }
  });
  return () => {
    unsubscribe();
    if (fleetTimer !== null) clearTimeout(fleetTimer);
  };
}

const FLEET_STATES = ["queued", "sent", "acknowledged", "applied", "failed", "expired", "replaced", "cancelled"];

function fleetRows(rows) {
  if (!rows.length) return `<p class="empty">No command in this state.</p>`;
  return `<table class="commands fleet"><thead><tr><th>Device</th><th>Command</th><th>State</th><th>Created</th><th></th></tr></thead><tbody>${rows
    .map((c) => {
      const device = state.devices.get(c.dev_eui);
      const cancellable = c.state === "queued" && !c.published_at;
      const where = c.state === "queued" ? (c.published_at ? " (at ChirpStack)" : " (in the gateway)") : "";
      return `<tr data-command-id="${esc(c.id)}" data-state="${esc(c.state)}"><td><a href="#/device/${esc(c.dev_eui)}">${esc(device ? label(device) : c.dev_eui)}</a></td><td>${esc(c.message)}<small> by ${esc(c.source)}</small></td><td><span class="badge ${esc(c.state)}">${esc(c.state)}</span><small>${esc(where)}</small>${c.error ? `<small class="error"> ${esc(c.error)}</small>` : ""}</td><td>${esc(fmtTime(c.created_at))}</td><td>${cancellable ? `<button type="button" class="small" data-cancel="${esc(c.id)}">Cancel</button>` : ""}</td></tr>`;
    })
    .join("")}</tbody></table>`;
}
