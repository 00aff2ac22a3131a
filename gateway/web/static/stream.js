// Reader of GET /api/v1/stream (server-sent events, WHATWG HTML §9.2 framing) over fetch():
// EventSource cannot send the Authorization header, and a token in a URL would end up in logs.
import { authHeaders } from "./api.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseBlock(block) {
  let type = "message";
  const data = [];
  let retry = null;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // comment (keepalive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  return { type, data: data.length ? data.join("\n") : null, retry };
}

export function openStream({ onMessage, onStatus, onUnauthorized }) {
  let stopped = false;
  let controller = null;
  let delay = 1000;

  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch("/api/v1/stream", {
          headers: authHeaders({ Accept: "text/event-stream" }),
          signal: controller.signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          onStatus("refused");
          onUnauthorized();
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream: HTTP ${response.status}`);
        onStatus("live");
        delay = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const message = parseBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (message.retry !== null) delay = message.retry;
            if (message.data === null) continue;
            try {
              onMessage(message.type, JSON.parse(message.data));
            } catch (error) {
              console.warn("stream message not handled", message.type, error);
            }
          }
        }
      } catch (error) {
        if (stopped) return;
        console.info("stream interrupted", error);
      }
      if (stopped) return;
      onStatus("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 15_000);
    }
  }

  run();
  return {
    close() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}
