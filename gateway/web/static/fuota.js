// FUOTA campaigns (GET /api/v1/fuota/campaigns, gateway/fuota_campaign.py): each campaign's
// state and progress, and its devices' states, polled every 5 s while the page is open. A
// gateway without [fuota] answers 409 and the page says so.
import { ApiError, api } from "./api.js";
import { esc, fmtTime } from "./model.js";

function bar(percent) {
  return `<progress max="100" value="${Number(percent) || 0}"></progress> ${esc(String(percent))} %`;
}

function campaignRow(c) {
  const counts = Object.entries(c.counts || {})
    .map(([k, v]) => `${esc(k)} ${v}`)
    .join(", ");
  return `<tr data-campaign="${esc(c.id)}"><td><a href="#/fuota/${esc(c.id)}">${esc(c.id.slice(0, 8))}</a></td>
    <td>${esc(c.group)}</td><td>${esc(c.from_version)} → ${esc(c.version)}</td><td>${esc(c.state)}</td>
    <td>${bar(c.progress.percent)}</td><td>${esc(counts)}</td>
    <td>${c.fragments_sent}/${c.progress.fragments_planned}</td><td>${esc(fmtTime(c.created_at))}</td></tr>`;
}

function deviceRows(doc) {
  return (doc.devices || [])
    .map(
      (d) => `<tr><td><a href="#/device/${esc(d.dev_eui)}">${esc(d.dev_eui)}</a></td><td>${esc(d.state)}</td>
      <td>${d.fragments_received}${d.fragments_missing == null ? "" : ` (${d.fragments_missing} missing)`}</td>
      <td>${esc(d.version ?? "")}</td><td>${esc(d.error)}</td></tr>`,
    )
    .join("");
}

export function renderFuota(main, campaignId) {
  main.innerHTML = `<section class="panel"><h2>Firmware updates</h2><p id="fuota-note" role="status"></p>
    <table class="fuota"><thead><tr><th>Campaign</th><th>Group</th><th>Version</th><th>State</th><th>Devices done</th>
    <th>Devices</th><th>Fragments</th><th>Started</th></tr></thead><tbody id="fuota-rows"></tbody></table>
    <table class="fuota-devices" ${campaignId ? "" : "hidden"}><thead><tr><th>Device</th><th>State</th>
    <th>Fragments</th><th>Version</th><th>Why</th></tr></thead><tbody id="fuota-devices"></tbody></table></section>`;
  const note = main.querySelector("#fuota-note");
  const rows = main.querySelector("#fuota-rows");
  const devices = main.querySelector("#fuota-devices");
  const controller = new AbortController();
  async function load() {
    try {
      const list = await api("/fuota/campaigns", { signal: controller.signal });
      rows.innerHTML = list.campaigns.map(campaignRow).join("");
      note.textContent = list.campaigns.length ? "" : "no campaign yet (citypack fuota start)";
      if (campaignId) {
        const doc = await api(`/fuota/campaigns/${encodeURIComponent(campaignId)}`, { signal: controller.signal });
        devices.innerHTML = deviceRows(doc);
      }
    } catch (error) {
      if (error instanceof ApiError) note.textContent = error.message;
      else if (error.name !== "AbortError") throw error;
    }
  }
  load();
  const timer = setInterval(load, 5000);
  return () => {
    clearInterval(timer);
    controller.abort();
  };
}
