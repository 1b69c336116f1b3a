// One WebRTC edge of the tree: one RTCPeerConnection carrying one data channel, the browser twin of
// peer/src/edge.rs. The parent of an edge is the offerer: it makes the offer; the child answers.
// Both create the channel "ownstream" (reliable, ordered, negotiated with id CHANNEL_ID). Events:
//   'signal'      detail: {kind: 'offer'|'answer', sdp} or {kind: 'candidate', candidate, sdpMid, sdpMLineIndex}
//   'open'        the data channel is open
//   'message'     detail: Uint8Array
//   'bufferedlow' the channel's buffered amount fell to its low threshold
//   'closed'      detail: {reason}; at most once, and never after the owner's own close()
//
// Invariants: the local description goes out before any local candidate; remote candidates that
// arrive before the remote description are queued; a candidate that cannot be added (an
// unresolvable mDNS name, say) fails only that call. ICE 'disconnected' may heal: the edge counts
// as closed only after `disconnectedGraceMs` more of it, or on 'failed'/'closed', or when the
// channel closes, or if it never opens within `connectTimeoutMs`.

export const CHANNEL_LABEL = 'ownstream';
/** SCTP stream id of the edge's channel, as in peer/src/edge.rs `CHANNEL_ID`. */
export const CHANNEL_ID = 0;

export class Edge extends EventTarget {
  constructor(role, { iceServers = [], iceTransportPolicy = 'all', disconnectedGraceMs = 5000, connectTimeoutMs = 20_000, lowThreshold = 256 * 1024 } = {}) {
    super();
    this.role = role;
    this.done = false;
    this.dc = null;
    this.remoteSet = false;
    this.pendingRemote = [];
    this.localSent = false;
    this.pendingLocal = [];
    this.lowThreshold = lowThreshold;
    this.disconnectedGraceMs = disconnectedGraceMs;
    this.timings = { created: performance.now() }; // first time of each step, for the benchmark
    this.pc = new RTCPeerConnection({ iceServers: iceServers.map(normalizeIceServer), iceTransportPolicy });
    this.pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return;
      const c = ev.candidate.toJSON();
      const payload = { kind: 'candidate', candidate: c.candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? undefined };
      if (this.localSent) this.emit('signal', payload);
      else this.pendingLocal.push(payload);
    };
    this.pc.onconnectionstatechange = () => {
      const s = this.pc.connectionState;
      this.timings[`pc_${s}`] ??= performance.now();
      if (s === 'failed' || s === 'closed') this.fail(`peer connection ${s}`);
    };
    this.pc.oniceconnectionstatechange = () => {
      const s = this.pc.iceConnectionState;
      this.timings[`ice_${s}`] ??= performance.now();
      clearTimeout(this.graceTimer);
      if (s === 'failed') this.fail('ICE failed');
      else if (s === 'disconnected') {
        this.graceTimer = setTimeout(() => this.fail('ICE disconnected for too long'), this.disconnectedGraceMs);
      }
    };
    this.connectTimer = setTimeout(() => this.fail('the connection did not open in time'), connectTimeoutMs);
    // Both ends create the channel themselves (negotiated, stream CHANNEL_ID): it opens as soon
    // as the SCTP association is up, without the in-band DATA_CHANNEL_OPEN/ACK round trip.
    this.attach(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true, negotiated: true, id: CHANNEL_ID }));
    if (role === 'offerer') {
      this.pc.createOffer()
        .then((offer) => this.pc.setLocalDescription(offer))
        .then(() => this.announceLocal('offer'))
        .catch((e) => this.fail(`cannot create an offer: ${e.message}`));
    }
  }

  attach(dc) {
    this.dc = dc;
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = this.lowThreshold;
    dc.onopen = () => {
      clearTimeout(this.connectTimer);
      this.timings.open ??= performance.now();
      this.emit('open');
    };
    dc.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) this.emit('message', new Uint8Array(ev.data));
      else this.fail('the remote sent a text message on the media channel');
    };
    dc.onbufferedamountlow = () => this.emit('bufferedlow');
    dc.onclose = () => this.fail('data channel closed');
  }

  announceLocal(kind) {
    this.emit('signal', { kind, sdp: this.pc.localDescription.sdp });
    this.localSent = true;
    for (const c of this.pendingLocal.splice(0)) this.emit('signal', c);
  }

  /** Applies signaling from the remote end (through the supervisor). */
  async handleSignal(payload) {
    if (this.done) return;
    if (payload.kind === 'offer' || payload.kind === 'answer') {
      this.timings[`remote_${payload.kind}`] ??= performance.now();
      await this.pc.setRemoteDescription({ type: payload.kind, sdp: payload.sdp });
      this.remoteSet = true;
      for (const c of this.pendingRemote.splice(0)) await this.addCandidate(c);
      if (payload.kind === 'offer') {
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.announceLocal('answer');
      }
    } else if (payload.kind === 'candidate') {
      if (!payload.candidate) return; // end of candidates
      if (this.remoteSet) await this.addCandidate(payload);
      else this.pendingRemote.push(payload);
    }
  }

  async addCandidate(c) {
    try {
      await this.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null });
    } catch {
      // One unusable candidate (say an mDNS name this browser cannot resolve) is not fatal: the
      // remote's real address is learnt from its connectivity checks anyway.
    }
  }

  get open() {
    return !this.done && this.dc?.readyState === 'open';
  }

  get bufferedAmount() {
    return this.dc ? this.dc.bufferedAmount : 0;
  }

  /** Sends one binary message; false if the channel is not open. */
  send(bytes) {
    if (!this.open) return false;
    try {
      this.dc.send(bytes);
      return true;
    } catch (e) {
      this.fail(`send failed: ${e.message}`);
      return false;
    }
  }

  /** Closes the edge; no 'closed' event follows (the owner knows). */
  close() {
    if (this.done) return;
    this.done = true;
    this.teardown();
  }

  fail(reason) {
    if (this.done) return;
    this.done = true;
    this.teardown();
    this.emit('closed', { reason });
  }

  teardown() {
    clearTimeout(this.connectTimer);
    clearTimeout(this.graceTimer);
    try { this.dc?.close(); } catch { /* closing twice is harmless */ }
    try { this.pc.close(); } catch { /* closing twice is harmless */ }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function normalizeIceServer(s) {
  const out = { urls: s.urls };
  if (s.username != null) out.username = s.username;
  if (s.credential != null) out.credential = s.credential;
  return out;
}
