// A consultation call: the signalling WebSocket and one RTCPeerConnection to the gateway.
// Shared by the room kiosk and the consultant page; media only ever flows to the gateway.

export class Call extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.pc = null;
    this.stream = null;
    this.screen = null;
    this.ended = false;
    this.pingTimer = null;
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
        await this.offer();
        break;
      case 'answer':
        await this.pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
        break;
      case 'offer': {
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
        if (message.code === 'media_lost' || message.code === 'media_failed') setTimeout(() => this.offer(), 1000);
        this.emit('error', message);
        break;
      default:
        // waiting, admitted, participants, timing, error
        this.emit(message.type, message);
    }
  }

  async offer() {
    this.closePeer();
    // No ICE servers: the gateway is the only peer, and its candidates come in its answer.
    this.pc = new RTCPeerConnection({ iceServers: [] });
    this.pc.addEventListener('track', (event) => this.emit('track', event));
    this.pc.addEventListener('connectionstatechange', () => this.emit('connection', this.pc.connectionState));
    for (const track of this.stream.getTracks()) {
      this.pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.stream] });
    }
    if (this.screen) {
      for (const track of this.screen.getVideoTracks()) {
        this.pc.addTransceiver(track, { direction: 'sendonly', streams: [this.screen] });
      }
    }
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    await this.gathered();
    this.send({ type: 'offer', sdp: this.pc.localDescription.sdp });
  }

  /** Waits (briefly) for local candidates, so they travel inside the offer. */
  gathered() {
    if (this.pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (this.pc.iceGatheringState === 'complete') resolve(); };
      this.pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, 1500);
    });
  }

  /** Starts (or stops) sharing `screen`, a display-capture stream, as a second video track. */
  async setScreen(screen) {
    if (this.screen) {
      for (const track of this.screen.getTracks()) track.stop();
    }
    this.screen = screen;
    await this.offer();
  }

  setMuted(kind, muted) {
    for (const track of this.stream.getTracks()) {
      if (track.kind === kind) track.enabled = !muted;
    }
  }

  admit(participantId) { this.send({ type: 'admit', participant_id: participantId }); }
  end() { this.send({ type: 'end' }); }
  leave() { this.ended = true; this.send({ type: 'leave' }); }

  closePeer() {
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
  }
}

/** Sentences for the reason codes a participant can meet. */
export const REASONS = {
  window_not_open: 'This consultation is not open yet.',
  window_closed: 'The time for this consultation has passed.',
  appointment_cancelled: 'This appointment was cancelled.',
  appointment_ended: 'This appointment has ended.',
  link_invalid: 'This link is not valid. Ask the booking team for a new one.',
  link_expired: 'This link has expired. Ask the booking team for a new one.',
  link_revoked: 'This link was withdrawn. Ask the booking team for a new one.',
  link_bound_elsewhere: 'This link was already opened in another browser. Use that browser, or ask for the link to be reissued.',
  device_revoked: "This room's credential was withdrawn. Ask staff to enrol the room again.",
  room_not_booked: 'There is no consultation booked for this room now.',
  room_locked_down: 'The prison is in lockdown, so the consultation cannot take place.',
  ended_by_clinician: 'The clinician ended the consultation.',
  terminated: 'Security staff ended this consultation.',
  already_connected: 'This consultation is already open in another window.',
  left: 'You left the consultation.',
  gateway_shutdown: 'The service is restarting. Please wait a moment.',
};

export function sentence(code, fallback) {
  return REASONS[code] || fallback || 'Something went wrong.';
}
