// citypack dashboard: login, hash routes (#/map, #/devices, #/device/{devEui}, #/commands),
// live stream, the gateway's readiness (/readyz) and the city's clock in the header.
import { ApiError, api, token } from "./api.js";
import { renderCommands } from "./commands.js";
import { renderDevice } from "./device.js";
import { renderDevices } from "./devices.js";
import { renderFuota } from "./fuota.js";
import { esc, isoParts, loadConfig, loadDevices, loadEvents, now, onStream, state } from "./model.js";
import { renderOverview } from "./overview.js";
import { openStream } from "./stream.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const live = document.getElementById("live");
const logoutButton = document.getElementById("logout");
const ready = document.getElementById("ready");
const instancesBadge = document.getElementById("instances");
const clock = document.getElementById("clock");
let timers = [];
let stream = null;
let cleanup = null;
let started = false;

function setLive(status) {
  live.textContent = status;
  live.dataset.status = status;
}

function showLogin(message = "") {
  if (cleanup) cleanup();
  cleanup = null;
  nav.hidden = live.hidden = logoutButton.hidden = ready.hidden = clock.hidden = true;
  instancesBadge.hidden = true;
  for (const timer of timers) clearInterval(timer);
  timers = [];
  main.innerHTML = `<section class="page login">
<form id="login" class="card">
  <h1>citypack</h1>
  <p>Sign in with the gateway's API token (<code>[api] token_file</code>). It is kept for this browser session only.</p>
  <label>API token<input type="password" name="token" autocomplete="current-password" required autofocus></label>
  <button type="submit">Sign in</button>
  <p class="error" id="login-error" role="alert">${esc(message)}</p>
</form></section>`;
  main.querySelector("#login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const given = event.target.elements.token.value.trim();
    token.set(given);
    try {
      await api("/stats");
    } catch (error) {
      token.clear();
      const text = error instanceof ApiError && error.status === 401 ? "The gateway refused this token." : `Cannot reach the gateway: ${error.message}`;
      main.querySelector("#login-error").textContent = text;
      return;
    }
    if (!location.hash || location.hash === "#/login") location.hash = "#/map";
    start();
  });
}

function logout(message = "") {
  token.clear();
  started = false;
  if (stream) stream.close();
  stream = null;
  showLogin(message);
}

async function start() {
  if (started) return route();
  started = true;
  nav.hidden = live.hidden = logoutButton.hidden = ready.hidden = clock.hidden = false;
  setLive("connecting");
  checkReady();
  checkInstances();
  timers.push(setInterval(checkReady, 5000), setInterval(checkInstances, 5000), setInterval(tick, 1000));
  try {
    await Promise.all([loadConfig(), loadDevices(), loadEvents()]);
    tick();
  } catch (error) {
    if (!token.get()) return;
    main.innerHTML = `<p class="error">${esc(error.message)}</p>`;
  }
  stream = openStream({
    onMessage: onStream,
    onStatus: setLive,
    onUnauthorized: () => logout("The gateway refused the token."),
  });
  route();
}

// the gateway's own word on whether it works (store and MQTT), not just whether the page's
// stream is open: a gateway without MQTT streams nothing new but still answers
async function checkReady() {
  let status = "down";
  let text = "gateway unreachable";
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const doc = await response.json();
    if (doc.ready) {
      status = "ready";
      text = "gateway ready";
    } else {
      status = "degraded";
      const missing = [doc.mqtt ? "" : "no MQTT", doc.store ? "" : "store down"].filter(Boolean);
      text = `gateway: ${missing.join(", ") || "not ready"}`;
    }
  } catch (error) {
    // unreachable: keep "down"
  }
  ready.dataset.status = status;
  ready.textContent = text;
}

// several instances on one PostgreSQL store (gateway/instances_api.py): one badge for the fleet,
// each instance (up or not heard from, and the once-per-fleet jobs it leads) in its tooltip and
// list; hidden while there is one instance, whose readiness the badge before it already shows
async function checkInstances() {
  let view;
  try {
    view = await api("/instances");
  } catch (error) {
    instancesBadge.hidden = true;
    return;
  }
  const rows = view.instances || [];
  if (rows.length < 2) {
    instancesBadge.hidden = true;
    return;
  }
  instancesBadge.hidden = false;
  instancesBadge.dataset.status = view.up === rows.length ? "ready" : "degraded";
  instancesBadge.textContent = `${view.up} of ${rows.length} instances up`;
  instancesBadge.title = rows
    .map((r) => `${r.client_id}${r.host ? ` on ${r.host}` : ""}: ${r.up ? "up" : "not heard from"}, last heartbeat ${isoParts(r.heartbeat_at).date} ${isoParts(r.heartbeat_at).time}`)
    .join("\n");
  instancesBadge.dataset.down = rows.filter((r) => !r.up).map((r) => r.client_id).join(" ");
}

function tick() {
  const at = isoParts(now());
  const sim = state.config.sim_clock ? "simulated " : "";
  clock.textContent = `${sim}${at.date} ${at.time} ${state.config.timezone}`;
}

function route() {
  if (!token.get()) return showLogin();
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash || "#/map";
  const [, page, arg] = hash.split("?")[0].split("/");
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.route === page);
  window.scrollTo(0, 0);
  if (page === "device" && /^[0-9a-fA-F]{16}$/.test(arg || "")) cleanup = renderDevice(main, arg.toLowerCase());
  else if (page === "commands") cleanup = renderCommands(main);
  else if (page === "devices") cleanup = renderDevices(main);
  else if (page === "fuota") cleanup = renderFuota(main, arg || "");
  else cleanup = renderOverview(main);
}

window.addEventListener("hashchange", () => started && route());
window.addEventListener("citypack:unauthorized", () => token.get() && logout("The gateway refused the token."));
logoutButton.addEventListener("click", () => logout());

if (token.get()) start();
else showLogin();
