// citypack dashboard: login, hash routes (#/map, #/device/{devEui}, #/commands), live stream.
import { ApiError, api, token } from "./api.js";
import { renderCommands } from "./commands.js";
import { renderDevice } from "./device.js";
import { esc, loadDevices, loadEvents, onStream } from "./model.js";
import { renderOverview } from "./overview.js";
import { openStream } from "./stream.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const live = document.getElementById("live");
const logoutButton = document.getElementById("logout");
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
  nav.hidden = live.hidden = logoutButton.hidden = true;
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
  nav.hidden = live.hidden = logoutButton.hidden = false;
  setLive("connecting");
  try {
    await Promise.all([loadDevices(), loadEvents()]);
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

function route() {
  if (!token.get()) return showLogin();
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash || "#/map";
  const [, page, arg] = hash.split("/");
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.route === page);
  window.scrollTo(0, 0);
  if (page === "device" && /^[0-9a-fA-F]{16}$/.test(arg || "")) cleanup = renderDevice(main, arg.toLowerCase());
  else if (page === "commands") cleanup = renderCommands(main);
  else cleanup = renderOverview(main);
}

window.addEventListener("hashchange", () => started && route());
window.addEventListener("citypack:unauthorized", () => token.get() && logout("The gateway refused the token."));
logoutButton.addEventListener("click", () => logout());

if (token.get()) start();
else showLogin();
