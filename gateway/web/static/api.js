// The gateway's HTTP API (/api/v1, bearer token) as the page uses it.
// The token lives in sessionStorage only: it goes when the tab or browser session ends.

const KEY = "citypack.token";

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

export async function api(path, { method = "GET", body, signal, raw = false } = {}) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("citypack:unauthorized"));
  }
  if (!response.ok) {
    let doc = {};
    try {
      doc = await response.json();
    } catch {
      /* not JSON: keep the status text */
    }
    throw new ApiError(response.status, doc.error || "http_error", doc.message || response.statusText);
  }
  return raw ? response : response.json();
}

// Downloads need the bearer header too, so they are fetched and handed over as a Blob URL.
export async function download(path, filename) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
