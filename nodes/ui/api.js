// Talking to the node that served this page. Every refusal of the API is JSON
// {"error": CODE, "detail": ...}; ApiError keeps both so the UI can show the reason as given.

export const token = new URLSearchParams(location.search).get("token") || "";

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(`${code}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.status = status; this.code = code; this.detail = detail;
  }
}

async function answer(response) {
  let body;
  try { body = await response.json(); } catch { body = { error: "bad_response", detail: response.statusText }; }
  if (!response.ok) throw new ApiError(response.status, body.error || "error", body.detail);
  return body;
}

export async function getJSON(path) {
  return answer(await fetch(path, { headers: { Accept: "application/json" } }));
}

export async function postJSON(path, body, { admin = false } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (admin && token) headers.Authorization = `Bearer ${token}`;
  return answer(await fetch(path, { method: "POST", headers, body: JSON.stringify(body) }));
}

export async function postText(path, text) {
  return answer(await fetch(path, { method: "POST", headers: { "Content-Type": "text/plain" }, body: text }));
}

// An element from a tag, attributes and children (strings become text nodes).
export function el(tag, attrs = {}, ...children) {
  const node = attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function short(hex, n = 12) { return hex ? `${hex.slice(0, n)}…` : ""; }
