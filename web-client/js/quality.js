// Call quality from the peer connection's statistics over the last two seconds: packet loss,
// round-trip time, and how much of the others' sound had to be concealed because it did not
// arrive. Sound is the measure because it always flows (a muted microphone sends silence),
// while a picture may stop for good reasons (a camera turned off).

/**
 * Where fair and poor begin. The gateway grades members for the security console on the same
 * figures (src/session/quality.rs), and a test there holds the two to the same values.
 */
export const LIMITS = { goodLoss: 0.02, fairLoss: 0.08, goodRttMs: 300, fairRttMs: 600 };

export class QualityMonitor {
  constructor(call, onChange) {
    this.call = call;
    this.onChange = onChange;
    this.last = null;
    this.level = null;
    /** Whether sound has arrived at all: before it does, silence is no sign of trouble. */
    this.heard = false;
    this.timer = setInterval(() => this.sample(), 2000);
  }

  async sample() {
    const pc = this.call.pc;
    if (!pc) return;
    const stats = await pc.getStats();
    const now = { received: 0, lost: 0, samples: 0, concealed: 0 };
    let rtt = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        now.received += r.packetsReceived || 0;
        now.lost += r.packetsLost || 0;
        if (r.kind === 'audio') {
          now.samples += r.totalSamplesReceived || 0;
          now.concealed += r.concealedSamples || 0;
        }
      }
      if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) {
        rtt = r.currentRoundTripTime * 1000;
      }
    });
    const previous = this.last;
    this.last = now;
    if (!previous) return;
    const got = now.received - previous.received;
    const missed = Math.max(0, now.lost - previous.lost);
    const loss = got + missed > 0 ? missed / (got + missed) : 0;
    const samples = now.samples - previous.samples;
    const concealment = samples > 0 ? (now.concealed - previous.concealed) / samples : 0;
    // Sound that flowed and stopped: nothing is arriving from the others.
    const silent = this.heard && samples === 0;
    if (samples > 0) this.heard = true;
    let level = 'good';
    if (pc.connectionState !== 'connected' || silent || concealment > 0.3 || loss > LIMITS.fairLoss
      || (rtt !== null && rtt > LIMITS.fairRttMs)) level = 'poor';
    else if (concealment > 0.05 || loss > LIMITS.goodLoss || (rtt !== null && rtt > LIMITS.goodRttMs)) level = 'fair';
    if (level !== this.level) {
      this.level = level;
      this.onChange(level, { loss, rtt, concealment });
    }
  }

  stop() { clearInterval(this.timer); }
}

/** Words for a quality level. */
export const QUALITY_TEXT = {
  good: 'Connection: good',
  fair: 'Connection: fair',
  poor: 'Connection: poor. Sound and picture may break up.',
};
