// A consultation call: the signalling WebSocket and one RTCPeerConnection to the gateway.
// Shared by the room kiosk and the consultant page; media only ever flows to the gateway.
// What the call means to a person (sentences, screens) is the pages' business.

// The camera goes out in simulcast layers (full resolution and fractions of it); the gateway
// forwards to each participant the one layer its connection can carry, so a poor prison link
// degrades one picture without lowering everyone's. Chromium caps the number of layers by the
// camera's size (about two below 960 pixels wide, one below 480) and drops the top ones beyond the
// cap, so only as many layers as will be sent are asked for; the gateway goes by what arrives.
function cameraLayers(width) {
  const full = { rid: 'f', scaleResolutionDownBy: 1 };
  const half = { rid: 'h', scaleResolutionDownBy: 2 };
  const quarter = { rid: 'q', scaleResolutionDownBy: 4 };
  if (width >= 960) return [quarter, half, full];
  if (width >= 480) return [half, full];
  return [];
}

/** Whether this browser can send simulcast layers named by rid (RFC 8852). */
function canSendSimulcast() {
  const capabilities = window.RTCRtpSender && RTCRtpSender.getCapabilities
    && RTCRtpSender.getCapabilities('video');
  return Boolean(capabilities && capabilities.headerExtensions
    .some((e) => e.uri === 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id'));
}

export class Call extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.pc = null;
    this.stream = null;
    this.screen = null;
    this.ended = false;
    this.pingTimer = null;
    this.makingOffer = false;
    this.screenTransceivers = [];
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ v: 1, ...message }));
    }
  }

  /** Joins with `credential` ({link} or {device}) and publishes `stream`. */
  start(credential, stream) {
    this.stream = stream;
    this.ended = false;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    this.ws = new WebSocket(url);
    this.ws.addEventListener('open', () => {
      this.send({ type: 'join', ...credential });
      this.pingTimer = setInterval(() => this.send({ type: 'ping' }), 20000);
    });
    this.ws.addEventListener('message', (event) => this.onMessage(JSON.parse(event.data)));
    this.ws.addEventListener('close', (event) => {
      clearInterval(this.pingTimer);
      this.closePeer();
      this.emit('closed', { code: event.code, ended: this.ended });
    });
  }

  async onMessage(message) {
    switch (message.type) {
      case 'joined':
        this.emit('joined', message);
        await this.connect();
        break;
      case 'answer':
        await this.pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
        break;
      case 'offer': {
        // Our own offer wins a collision: the gateway drops its offer when ours arrives and
        // offers its changes again after answering, so an offer met mid-negotiation is stale.
        if (!this.pc || this.makingOffer || this.pc.signalingState !== 'stable') break;
        await this.pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.send({ type: 'answer', sdp: this.pc.localDescription.sdp });
        break;
      }
      case 'ended':
        this.ended = true;
        this.emit('ended', message);
        break;
      case 'pong':
        break;
      case 'error':
        // The gateway lost this browser's media: a fresh peer connection brings it back.
        if (message.code === 'media_lost' || message.code === 'media_failed') setTimeout(() => this.connect(), 1000);
        this.emit('error', message);
        break;
      default:
        // waiting, admitted, participants, timing, invited
        this.emit(message.type, message);
    }
  }

  /** Opens a new peer connection to the gateway and offers our tracks. */
  async connect() {
    this.closePeer();
    // No ICE servers: the gateway is the only peer, and its candidates come in its answer.
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addEventListener('track', (event) => this.emit('track', event));
    pc.addEventListener('connectionstatechange', () => {
      this.emit('connection', pc.connectionState);
      // A changed network (Wi-Fi to wired, a new address) recovers with an ICE restart on
      // the same connection; media resumes without joining again.
      if (pc === this.pc && pc.connectionState === 'failed') this.negotiate({ iceRestart: true });
    });
    for (const track of this.stream.getTracks()) this.addCameraOrMicrophone(pc, track);
    if (this.screen) this.addScreenTracks();
    await this.negotiate();
  }

  /** Offers the peer connection's current tracks to the gateway, which answers in place. */
  async negotiate(options = {}) {
    if (!this.pc) return;
    this.makingOffer = true;
    try {
      const offer = await this.pc.createOffer(options);
      await this.pc.setLocalDescription(offer);
      await this.gathered();
      this.send({ type: 'offer', sdp: this.pc.localDescription.sdp });
    } finally {
      this.makingOffer = false;
    }
  }

  /** Waits (briefly) for local candidates, so they travel inside the offer. */
  gathered() {
    if (this.pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (this.pc && this.pc.iceGatheringState === 'complete') resolve(); };
      this.pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, 1500);
    });
  }

  /** Adds a microphone or camera track; the camera in simulcast where the browser can. */
  addCameraOrMicrophone(pc, track) {
    const init = { direction: 'sendrecv', streams: [this.stream] };
    const layers = track.kind === 'video' ? cameraLayers(track.getSettings().width || 0) : [];
    if (layers.length > 1 && canSendSimulcast()) {
      try {
        return pc.addTransceiver(track, { ...init, sendEncodings: layers });
      } catch (e) {
        // A browser that lists the extension but refuses these layers sends one stream.
      }
    }
    return pc.addTransceiver(track, init);
  }

  addScreenTracks() {
    this.screenTransceivers = this.screen.getVideoTracks().map((track) =>
      this.pc.addTransceiver(track, { direction: 'sendonly', streams: [this.screen] }));
  }

  /**
   * Starts sharing `screen` (a display-capture stream) as a second video track, or stops
   * sharing when it is null. The existing connection is renegotiated; the camera carries on.
   */
  async setScreen(screen) {
    if (this.screen) {
      for (const track of this.screen.getTracks()) track.stop();
      for (const transceiver of this.screenTransceivers || []) transceiver.stop();
      this.screenTransceivers = [];
    }
    this.screen = screen;
    if (!this.pc) return;
    if (screen) this.addScreenTracks();
    await this.negotiate();
  }

  setMuted(kind, muted) {
    for (const track of this.stream.getTracks()) {
      if (track.kind === kind) track.enabled = !muted;
    }
  }

  admit(participantId) { this.send({ type: 'admit', participant_id: participantId }); }
  invite(participantId) { this.send({ type: 'invite', participant_id: participantId }); }
  end() { this.send({ type: 'end' }); }
  leave() { this.ended = true; this.send({ type: 'leave' }); }

  closePeer() {
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
  }
}
