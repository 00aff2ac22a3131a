// One device: its twin, charts from the uplink history, the decoded frames, its commands.
import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { MESSAGES, commandForm, commandRows, readFields, send, track, tracked } from "./commands.js";
import { describeEvent, esc, fmtAgo, fmtTime, label, lampColour, lookOf, state, subscribe } from "./model.js";

const hhmm = (minutes) => `${String(Math.floor(minutes / 60) % 24).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;

function when(step) {
  const offset = step.offset_min || 0;
  if (step.anchor === "clock") return hhmm(offset);
  if (!offset) return step.anchor;
  return `${step.anchor} ${offset > 0 ? "+" : "−"} ${Math.abs(offset)} min`;
}

function levelText(level) {
  return `<span class="level" style="background:${lampColour(level)}"></span><b>${level ? `${level}%` : "off"}</b>`;
}

// a lamp_profile (TALQ ControlProgram) as people read it: a level, then each step from its time
export function profileTimeline(profile) {
  if (!profile || typeof profile !== "object") return `<p class="empty">No night program pushed yet.</p>`;
  const steps = Array.isArray(profile.steps) ? profile.steps : [];
  const items = [`<li>from the start ${levelText(profile.base_level ?? 0)}</li>`]
    .concat(steps.map((step) => `<li>${esc(when(step))} → ${levelText(step.dim_level ?? 0)}</li>`));
  const boost = typeof profile.boost_level === "number"
    ? `<p>When someone passes: ${levelText(profile.boost_level)} for ${esc(profile.hold_time_s ?? "?")} s, then back to the program.</p>`
    : "";
  return `<ol class="timeline" data-profile-version="${esc(profile.config_version ?? "")}">${items.join("")}</ol>${boost}`;
}

function show(key, value) {
  if ((key.endsWith("_at") || key === "last_seen") && typeof value === "number") return fmtTime(value);
  return typeof value === "object" && value !== null ? JSON.stringify(value) : value;
}

function kv(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return `<p class="empty">—</p>`;
  return `<dl class="kv">${entries
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(show(k, v))}</dd>`)
    .join("")}</dl>`;
}

function charts(device, uplinks) {
  const up = [...uplinks].reverse(); // oldest first
  const series = (key) => up.filter((u) => u.fields && key in u.fields).map((u) => [u.received_at, u.fields[key]]);
  const out = [];
  if (device.kind === "bin") {
    out.push(lineChart("Fill", "%", series("fill_percent"), { min: 0, max: 100, colour: "#e0651b" }));
    out.push(lineChart("Temperature", " °C", series("temperature_c"), { colour: "#c4162a" }));
    out.push(lineChart("Battery", "%", series("battery_percent"), { min: 0, max: 100, colour: "#2e9e5b" }));
  } else if (device.kind === "lamp") {
    out.push(lineChart("Level", "%", series("dim_level"), { min: 0, max: 100, colour: "#c9a227" }));
    out.push(lineChart("Power", " W", series("active_power_w"), { min: 0, colour: "#3b6fb6" }));
  }
  out.push(lineChart("RSSI", " dBm", up.map((u) => [u.received_at, u.rssi]), { colour: "#6a4fb6" }));
  out.push(lineChart("SNR", " dB", up.map((u) => [u.received_at, u.snr]), { colour: "#2a8a8a" }));
  return out.join("");
}

function uplinkTable(uplinks) {
  if (!uplinks.length) return `<p class="empty">No uplink stored yet.</p>`;
  return `<table class="uplinks"><thead><tr><th>Received</th><th>FCnt</th><th>Port</th><th>Message</th><th>Decoded</th><th>Radio</th></tr></thead><tbody>${uplinks
    .map(
      (u) =>
        `<tr data-f-cnt="${esc(u.f_cnt)}"><td>${esc(fmtTime(u.received_at))}</td><td>${esc(u.f_cnt)}</td><td>${esc(u.f_port)}</td><td>${esc(u.message)}</td><td><code>${esc(JSON.stringify(u.fields))}</code><details><summary>bytes</summary><code>${esc(u.data)}</code></details></td><td>DR${esc(u.dr)} ${esc(u.rssi)} dBm ${esc(u.snr)} dB ×${esc(u.gateways)}</td></tr>`,
    )
    .join("")}</tbody></table>`;
}

export function renderDevice(main, devEui) {
  main.innerHTML = `<section class="page device"><p class="empty">Loading ${esc(devEui)}…</p></section>`;
  let alive = true;
  let commands = [];
  let uplinks = [];
  let events = [];

  const loadCommands = async () => {
    // active ones from the device, finished ones by the ids its command_* events name
    const active = (await api(`/devices/${devEui}/commands`)).commands;
    const ids = [];
    for (const e of events) {
      if (e.type.startsWith("command_") && e.data?.id && !ids.includes(e.data.id)) ids.push(e.data.id);
    }
    for (const c of tracked) if (c.dev_eui === devEui && !ids.includes(c.id)) ids.push(c.id);
    const known = new Set(active.map((c) => c.id));
    const rest = await Promise.all(
      ids.filter((id) => !known.has(id)).slice(0, 20).map((id) => api(`/commands/${id}`).catch(() => null)),
    );
    commands = [...active, ...rest.filter(Boolean)]
      .map((c) => ({ ...c, at: c.created_at }))
      .sort((a, b) => b.created_at - a.created_at);
  };

  const load = async () => {
    const [device, up, ev] = await Promise.all([
      api(`/devices/${devEui}`),
      api(`/devices/${devEui}/uplinks?limit=200`),
      api(`/events?dev_eui=${devEui}&limit=100`),
    ]);
    state.devices.set(device.dev_eui, device);
    uplinks = up.uplinks;
    events = ev.events;
    await loadCommands();
  };

  const paint = () => {
    if (!alive) return;
    const device = state.devices.get(devEui);
    if (!device) return;
    const { look, alarms, fill } = lookOf(device);
    const messages = Object.keys(MESSAGES).filter((m) => MESSAGES[m].kind === device.kind);
    const form = main.querySelector("#quick");
    const keep = form ? { message: form.message.value, html: form.querySelector(".fields").innerHTML, values: Object.fromEntries([...form.elements].filter((e) => e.name).map((e) => [e.name, e.value])) } : null;
    main.innerHTML = `<section class="page device" data-dev-eui="${esc(devEui)}">
<h1><span class="dot" style="background:${fill}"></span>${esc(label(device))} <small>${esc(device.dev_eui)}</small></h1>
<p class="meta"><span class="badge ${esc(device.availability)}">${esc(device.availability)}</span> ${esc(device.kind)} · ${esc(look)}${alarms.length ? ` · <b class="error">${esc(alarms.join(", "))}</b>` : ""} · ${esc(device.street || "no street")}${device.group ? ` · group ${esc(device.group)}` : ""} · last heard ${esc(fmtAgo(device.last_seen))}</p>
<div class="grid">
  <div class="card"><h2>Reported state</h2>${kv(device.reported)}</div>
  <div class="card"><h2>Desired config</h2>
    <p>desired version <b id="desired-version">${esc(device.desired_version ?? "—")}</b>, reported version <b id="reported-version">${esc(device.reported_version ?? "—")}</b>, ${device.config_in_sync === null ? "no config pushed" : device.config_in_sync ? '<span class="badge applied">in sync</span>' : '<span class="badge queued">pending</span>'}</p>
    ${device.kind === "lamp" ? `<h3>Night program</h3>${profileTimeline(device.desired?.lamp_profile)}` : ""}
    ${(() => {
      const rest = Object.fromEntries(Object.entries(device.desired || {}).filter(([k]) => k !== "lamp_profile"));
      return device.kind === "lamp" && !Object.keys(rest).length ? "" : kv(rest);
    })()}</div>
  <div class="card"><h2>Derived</h2>${kv(device.derived)}<h3>Signal</h3>${kv({ dr: device.last_dr, rssi: device.last_rssi, snr: device.last_snr, f_cnt: device.last_f_cnt })}</div>
</div>
<div class="card"><h2>Over time <small>(last ${uplinks.length} uplinks)</small></h2><div class="charts">${charts(device, uplinks)}</div></div>
<div class="card"><h2>Commands</h2>
  ${messages.length ? `<form id="quick" class="row"><label>Send<select name="message">${messages.map((m) => `<option>${m}</option>`).join("")}</select></label><div class="row fields"></div><button type="submit">Send</button><output name="result"></output></form>` : ""}
  <div id="device-commands">${commandRows(commands)}</div></div>
<div class="card"><h2>Events</h2><ul class="events">${events.slice(0, 30).map((e) => `<li data-type="${esc(e.type)}"><time>${esc(fmtTime(e.at))}</time> <b>${esc(e.type)}</b> ${esc(describeEvent(e))}</li>`).join("") || '<li class="empty">none</li>'}</ul></div>
<div class="card"><h2>Uplinks</h2>${uplinkTable(uplinks.slice(0, 100))}</div>
</section>`;
    const quick = main.querySelector("#quick");
    if (quick) {
      const fields = quick.querySelector(".fields");
      if (keep) {
        quick.message.value = keep.message;
        fields.innerHTML = keep.html;
        for (const [name, value] of Object.entries(keep.values)) if (quick.elements[name]) quick.elements[name].value = value;
      } else {
        fields.innerHTML = commandForm(quick.message.value, "quick");
      }
      quick.message.addEventListener("change", () => (fields.innerHTML = commandForm(quick.message.value, "quick")));
      quick.addEventListener("submit", async (event) => {
        event.preventDefault();
        let values;
        try {
          values = readFields(quick, quick.message.value);
        } catch (error) {
          quick.result.value = error.message;
          return;
        }
        const [result] = await send([device], quick.message.value, values);
        quick.result.value = result.error ? `refused: ${result.error}` : `queued ${result.command.id.slice(0, 8)}`;
        if (result.command) {
          commands.unshift({ ...result.command, at: result.command.created_at });
          repaintCommands();
        }
      });
    }
  };

  const repaintCommands = () => {
    const box = main.querySelector("#device-commands");
    if (box) box.innerHTML = commandRows(commands);
  };

  let reloadTimer = null;
  const reload = () => {
    if (reloadTimer !== null) return;
    reloadTimer = setTimeout(async () => {
      reloadTimer = null;
      try {
        await load();
        paint();
      } catch (error) {
        console.warn(error);
      }
    }, 500);
  };

  load()
    .then(paint)
    .catch((error) => {
      if (alive) main.innerHTML = `<section class="page"><p class="error">${esc(error.message)}</p><p><a href="#/map">back to the map</a></p></section>`;
    });

  const unsubscribe = subscribe((kind, payload) => {
    if (kind === "device" && payload.dev_eui === devEui) reload();
    if (kind === "event" && payload.dev_eui === devEui) {
      events.unshift(payload);
      if (payload.type.startsWith("command_")) {
        const c = commands.find((x) => x.id === payload.data?.id);
        if (c) {
          c.state = payload.type.slice(8);
          c.error = payload.data.error || c.error;
          repaintCommands();
        }
        reload();
      }
    }
  });
  return () => {
    alive = false;
    unsubscribe();
    if (reloadTimer !== null) clearTimeout(reloadTimer);
  };
}

export { track };
