// The REST API (docs/rest-api.md): public GETs, and trader requests signed in the browser.
//
// Signing is HMAC-SHA256 keyed with the API secret over
// timestamp + METHOD + path-with-query + body, computed with WebCrypto (crypto.subtle),
// which browsers offer only in a secure context: HTTPS, or http://localhost / 127.0.0.1.

const encoder = new TextEncoder();
let clockOffsetMs = 0;

/** An error envelope ({"success": false, "error": {code, message, details}}) or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

async function unwrap(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status, `HTTP_${response.status}`, `the server answered ${response.status}`);
  }
  if (!body.success) {
    const error = body.error || {};
    throw new ApiError(response.status, error.code, error.message, error.details);
  }
  return body.data;
}

async function send(target, options) {
  let response;
  try {
    response = await fetch(target, options);
  } catch (error) {
    throw new ApiError(0, "NETWORK_ERROR", `the gateway cannot be reached (${error.message})`);
  }
  return unwrap(response);
}

/** GET a public route; resolve to the envelope's data. */
export function publicGet(target) {
  return send(target, { headers: { Accept: "application/json" } });
}

/** Learn how far this machine's clock is from the server's, so signed timestamps fall in its window. */
export async function syncClock() {
  const sent = Date.now();
  const { server_time: serverTime } = await publicGet("/api/v1/time");
  clockOffsetMs = serverTime - Math.round((sent + Date.now()) / 2);
}

/** True when this page may sign requests (WebCrypto is available). */
export function canSign() {
  return Boolean(window.isSecureContext && window.crypto && window.crypto.subtle);
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** An API key and its secret; signs REST requests and the feed's `authenticate` op. */
export class Credentials {
  constructor(apiKey, hmacKey) {
    this.apiKey = apiKey;
    this.hmacKey = hmacKey;
    this.lastTimestamp = 0;
  }

  static async create(apiKey, secret) {
    const hmacKey = await crypto.subtle.importKey(
      "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return new Credentials(apiKey, hmacKey);
  }

  /** A fresh millisecond timestamp: the server accepts each signature once, so never reuse one. */
  timestamp() {
    this.lastTimestamp = Math.max(Date.now() + clockOffsetMs, this.lastTimestamp + 1);
    return this.lastTimestamp;
  }

  async sign(message) {
    return hex(await crypto.subtle.sign("HMAC", this.hmacKey, encoder.encode(message)));
  }

  /** Send a signed request; `target` is the path with its query, exactly as sent. */
  async request(method, target, body) {
    const text = body === undefined ? "" : JSON.stringify(body);
    const timestamp = String(this.timestamp());
    const headers = {
      Accept: "application/json",
      "X-API-Key": this.apiKey,
      "X-Timestamp": timestamp,
      "X-Signature": await this.sign(timestamp + method + target + text),
    };
    if (text) headers["Content-Type"] = "application/json";
    return send(target, { method, headers, body: text || undefined });
  }

  /** The feed's `authenticate` op: a signature over timestamp + "GET/ws". */
  async feedAuthentication() {
    const timestamp = this.timestamp();
    return { op: "authenticate", api_key: this.apiKey, timestamp, signature: await this.sign(`${timestamp}GET/ws`) };
  }
}
