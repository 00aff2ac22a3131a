// Node harness: run JSON-lines payload cases through the generated ChirpStack codec.
//
// Usage: node js_payloads_harness.js CODEC.js CASES.jsonl
// The codec runs in a bare vm context (no require, no Buffer, no process), as ChirpStack's
// QuickJS would run it. Prints one JSON line: {"checked": N, "failures": [...]}.
"use strict";

const fs = require("fs");
const vm = require("vm");

const [codecPath, casesPath] = process.argv.slice(2);
const sandbox = vm.createContext({});
vm.runInContext(fs.readFileSync(codecPath, "utf8"), sandbox, { filename: codecPath });

function canon(value) {
  if (Array.isArray(value)) return "[" + value.map(canon).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canon(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

function call(name, input) {
  try {
    const result = sandbox[name](input);
    if (result === null || typeof result !== "object") return { threw: "returned " + result };
    return result;
  } catch (e) {
    return { threw: String(e) };
  }
}

function hasErrors(result) {
  return (
    Array.isArray(result.errors) &&
    result.errors.length > 0 &&
    result.errors.every((e) => typeof e === "string") &&
    result.data === undefined &&
    result.bytes === undefined
  );
}

function toHex(bytes) {
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
}

function checkEncode(c) {
  const data = Object.assign({ message: c.message }, c.fields);
  const down = c.direction === "down";
  const result = call(down ? "encodeDownlink" : "encodeAny", { data: data, variables: {} });
  if (result.threw) return "encode " + c.message + " threw " + result.threw;
  if (c.error) return hasErrors(result) ? null : "encode accepted invalid fields: " + c.reason;
  if (result.errors) return "encode " + c.message + " errors " + result.errors.join("; ");
  if (toHex(result.bytes) !== c.hex) return "encode " + c.message + ": " + toHex(result.bytes);
  if (result.fPort !== c.fport) return "encode " + c.message + " fPort " + result.fPort;
  if (!down) {
    const refused = call("encodeDownlink", { data: data });
    if (!hasErrors(refused)) return "encodeDownlink accepted the uplink " + c.message;
  }
  return null;
}

function checkDecode(c) {
  const bytes = [];
  for (let i = 0; i < c.hex.length; i += 2) bytes.push(parseInt(c.hex.substr(i, 2), 16));
  const fn = c.direction === "down" ? "decodeDownlink" : "decodeUplink";
  const input = { bytes: bytes, fPort: c.fport, variables: {}, recvTime: new Date(0) };
  const result = call(fn, input);
  const where = fn + " fPort " + c.fport + " " + c.hex;
  if (result.threw) return where + " threw " + result.threw;
  if (c.error) return hasErrors(result) ? null : where + " accepted (" + (c.reason || "mutation") + ")";
  if (result.errors) return where + " errors " + result.errors.join("; ");
  const expected = Object.assign({ message: c.message }, c.fields);
  if (canon(result.data) !== canon(expected)) return where + " gave " + canon(result.data);
  const other = call(c.direction === "down" ? "decodeUplink" : "decodeDownlink", input);
  if (!hasErrors(other)) return where + " also decoded in the other direction";
  return null;
}

let checked = 0;
const failures = [];
for (const line of fs.readFileSync(casesPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  checked++;
  const problem = c.op === "encode" ? checkEncode(c) : checkDecode(c);
  if (problem && failures.length < 20) failures.push(problem);
}
// Inputs ChirpStack could hand over that are not even byte arrays: errors, never exceptions.
for (const input of [{}, { bytes: null, fPort: 10 }, { bytes: [256], fPort: 10 }, { bytes: "a0", fPort: 10 }]) {
  checked++;
  const result = call("decodeUplink", input);
  if (!hasErrors(result)) failures.push("decodeUplink(" + JSON.stringify(input) + ") gave " + canon(result));
}
for (const input of [{}, { data: null }, { data: [] }, { data: { message: "nope" } }]) {
  checked++;
  const result = call("encodeDownlink", input);
  if (!hasErrors(result)) failures.push("encodeDownlink(" + JSON.stringify(input) + ") gave " + canon(result));
}
console.log(JSON.stringify({ checked: checked, failures: failures }));
