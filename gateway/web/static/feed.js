// One WebSocket connection to the feed (docs/websocket-api.md), kept open.
//
// The connection remembers what it is subscribed to; after a reconnect it subscribes again
// (fresh snapshots follow) and signs in again. Private channels are subscribed only once
// the feed has answered `authenticated`.

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;

/**
 * Where the feed is: the gateway puts `feed.public_url` (or nothing) and `ws_port` in
 * <meta> tags. `?ws=` overrides them, but only towards the page's own host or the
 * configured feed's host, so a link cannot point a signed-in page at someone else's server.
 * Returns {url, warning}.
 */
export function feedUrl(location, configured, port, override) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const toWebSocket = (text) => {
    const url = new URL(text, location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    return url;
  };
  const base = configured ? toWebSocket(configured) : new URL(`${scheme}//${location.hostname}:${port}/ws`);
  if (!override) return { url: base.href, warning: null };
  let wanted;
  try {
    wanted = toWebSocket(override);
  } catch {
    return { url: base.href, warning: `ignored ?ws=${override}: not a URL` };
  }
  const allowedHosts = new Set([location.hostname, base.hostname]);
  if (!["ws:", "wss:"].includes(wanted.protocol) || !allowedHosts.has(wanted.hostname)) {
    return { url: base.href, warning: `ignored ?ws=${override}: only this page's host (${location.hostname}) or the configured feed's host may be used` };
  }
  return { url: wanted.href, warning: null };
}

export class Feed {
  /**
   * callbacks: onState(state, detail) with state "connecting" | "live" | "disconnected";
   * onError(message) for {"op": "error"} messages; onReconnect() after a connection came
   * back (REST snapshots may need fetching again); onPrivateReady() once the private
   * channels are subscribed on a signed-in connection.
   */
  constructor(url, callbacks) {
    this.url = url;
    this.callbacks = callbacks;
    this.handlers = new Map();
    this.publicChannels = new Set();
    this.privateChannels = new Set();
    this.credentials = null;
    this.authenticated = false;
    this.privatePending = false;
    this.socket = null;
    this.failures = 0;
    this.opened = false;
  }

  start() {
    this.callbacks.onState("connecting", this.url);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => this.onOpen(socket));
    socket.addEventListener("message", (event) => this.onMessage(event.data));
    socket.addEventListener("close", (event) => this.onClose(socket, event));
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (this.isOpen) this.socket.send(JSON.stringify(message));
  }

  /** Subscribe to public channels; `handler(message)` gets each one's data messages. */
  subscribe(channels, handler) {
    for (const channel of channels) {
      this.publicChannels.add(channel);
      this.handlers.set(channel, handler);
    }
    if (channels.length) this.send({ op: "subscribe", channels });
  }

  unsubscribe(channels) {
    const held = channels.filter((channel) => this.publicChannels.delete(channel));
    for (const channel of held) this.handlers.delete(channel);
    if (held.length) this.send({ op: "unsubscribe", channels: held });
  }

  /** Ask for a fresh snapshot of a channel (after a gap): unsubscribe, then subscribe again. */
  resubscribe(channel) {
    this.send({ op: "unsubscribe", channels: [channel] });
    this.send({ op: "subscribe", channels: [channel] });
  }

  /** Sign in with `credentials` and follow the private channels (`handlers`: channel -> handler). */
  async signIn(credentials, handlers) {
    this.signOut();
    this.credentials = credentials;
    for (const [channel, handler] of Object.entries(handlers)) {
      this.privateChannels.add(channel);
      this.handlers.set(channel, handler);
    }
    if (this.authenticated) {
      // A connection authenticates once: sign in with another key on a new connection.
      this.socket.close(1000, "signing in again");
    } else if (this.isOpen) {
      this.send(await credentials.feedAuthentication());
    }
  }

  signOut() {
    if (this.privateChannels.size && this.authenticated) {
      this.send({ op: "unsubscribe", channels: [...this.privateChannels] });
    }
    for (const channel of this.privateChannels) this.handlers.delete(channel);
    this.privateChannels.clear();
    this.privatePending = false;
    this.credentials = null;
  }

  async onOpen(socket) {
    if (socket !== this.socket) return;
    this.callbacks.onState("live", this.url);
    if (this.publicChannels.size) this.send({ op: "subscribe", channels: [...this.publicChannels] });
    if (this.opened) this.callbacks.onReconnect();
    this.opened = true;
    if (this.credentials) this.send(await this.credentials.feedAuthentication());
  }

  onMessage(text) {
    const message = JSON.parse(text);
    if (message.channel !== undefined) {
      const handler = this.handlers.get(message.channel);
      if (handler) handler(message);  // messages of a channel just left may still arrive
      return;
    }
    if (message.op === "authenticated") {
      this.authenticated = true;
      if (this.privateChannels.size) {
        this.privatePending = true;
        this.send({ op: "subscribe", channels: [...this.privateChannels] });
      }
    } else if (message.op === "subscribed") {
      this.failures = 0;  // the feed serves us (one that accepts and then drops us gets slower retries)
      const channels = new Set(message.channels);
      if (this.privatePending && [...this.privateChannels].every((channel) => channels.has(channel))) {
        this.privatePending = false;
        this.callbacks.onPrivateReady();
      }
    } else if (message.op === "error") {
      this.callbacks.onError(message);
    }
  }

  onClose(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.authenticated = false;
    this.privatePending = false;
    const delay = Math.min(RECONNECT_MIN_MS * 2 ** this.failures, RECONNECT_MAX_MS);
    this.failures += 1;
    const reason = event.reason ? ` (${event.code} ${event.reason})` : "";
    this.callbacks.onState("disconnected", `${this.url}${reason}; retrying in ${Math.round(delay / 1000)} s`);
    setTimeout(() => this.start(), delay);
  }
}
