// Node harness: run the payload vectors' uplink decode cases through the generated OS2iot
// decoder, inside a raw ChirpStack v4 "up" event as OS2iot hands it to decode(payload, metadata).
//
// Usage: node js_os2iot_harness.js DECODER.js CASES.jsonl
// The decoder runs in a bare vm context (no require, no Buffer, no atob), so it must carry its
// own base64 reader. Prints one JSON line: {"checked": N, "failures": [...]}.
"use strict";

const fs = require("fs");
const vm = require("vm");

const [decoderPath, casesPath] = process.argv.slice(2);
const sandbox = vm.createContext({});
vm.runInContext(fs.readFileSync(decoderPath, "utf8"), sandbox, { filename: decoderPath });

function canon(value) {
  if (Array.isArray(value)) return "[" + value.map(canon).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canon(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

const metadata = {
  id: 17,
  name: "bin-0001",
  metadata: JSON.stringify({ kind: "bin", street: "Mejlgade" }),
  deviceEUI: "70B3D57ED0051A2F",
};

let checked = 0;
const failures = [];
for (const line of fs.readFileSync(casesPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  if (c.op !== "decode" || c.direction !== "up") continue;
  checked += 1;
  const payload = {
    deduplicationId: "5b3c1f2e-0000-4000-8000-00000000" + String(checked).padStart(4, "0"),
    time: "2026-03-02T10:15:42.120384+00:00",
    deviceInfo: { devEui: "70B3D57ED0051A2F", deviceName: "os2iot-bin-0001" },
    fCnt: checked,
    fPort: c.fport,
    data: Buffer.from(c.hex, "hex").toString("base64"),
  };
  let result;
  try {
    result = sandbox.decode(payload, metadata);
  } catch (e) {
    failures.push("threw " + String(e) + " on " + c.hex);
    continue;
  }
  const where = "fPort " + c.fport + " " + c.hex;
  if (result === null || typeof result !== "object") {
    failures.push(where + " returned " + result);
    continue;
  }
  const envelope = {
    devEui: "70b3d57ed0051a2f",
    fPort: c.fport,
    fCnt: checked,
    time: payload.time,
    deduplicationId: payload.deduplicationId,
  };
  if (c.error) {
    const ok =
      Array.isArray(result.errors) &&
      result.errors.length > 0 &&
      result.message === undefined &&
      canon(Object.assign({}, result, { errors: undefined })) ===
        canon(Object.assign({}, envelope, { errors: undefined }));
    if (!ok) failures.push(where + " accepted or lost the envelope: " + canon(result));
    continue;
  }
  const expected = Object.assign({ message: c.message }, c.fields, envelope, {
    os2iotId: 17,
    deviceName: "bin-0001",
  });
  if (canon(result) !== canon(expected)) failures.push(where + " gave " + canon(result));
}
// a body that is not an uplink at all still answers (never throws)
for (const bad of [null, {}, { fPort: 2, data: "!!!" }, { fPort: "2", data: "AQ==" }]) {
  checked += 1;
  try {
    const r = sandbox.decode(bad, null);
    if (!Array.isArray(r.errors)) failures.push("no errors for " + JSON.stringify(bad));
  } catch (e) {
    failures.push("threw on " + JSON.stringify(bad) + ": " + String(e));
  }
}
process.stdout.write(JSON.stringify({ checked: checked, failures: failures }) + "\n");
