// Call quality from the peer connection's statistics: packet loss and round-trip time over
// the last few seconds, judged good, fair or poor.

export class QualityMonitor {
  constructor(call, onChange) {
    this.call = call;
    this.onChange = onChange;
    this.last = null;
    this.level = null;
    this.timer = setInterval(() => this.sample(), 2000);
  }

  async sample() {
    const pc = this.call.pc;
    if (!pc) return;
    const stats = await pc.getStats();
    let received = 0;
    let lost = 0;
    let rtt = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        received += r.packetsReceived || 0;
        lost += r.packetsLost || 0;
      }
      if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) {
        rtt = r.currentRoundTripTime * 1000;
      }
    });
    const previous = this.last;
    this.last = { received, lost };
    if (!previous) return;
    const got = received - previous.received;
    const missed = Math.max(0, lost - previous.lost);
    const loss = got + missed > 0 ? missed / (got + missed) : 0;
    let level = 'good';
    if (pc.connectionState !== 'connected' || got === 0 || loss > 0.08 || (rtt !== null && rtt > 600)) level = 'poor';
    else if (loss > 0.02 || (rtt !== null && rtt > 300)) level = 'fair';
    if (level !== this.level) {
      this.level = level;
      this.onChange(level, { loss, rtt });
    }
  }

  stop() { clearInterval(this.timer); }
}

/** Words for a quality level. */
export const QUALITY_TEXT = {
  good: 'Connection: good',
  fair: 'Connection: fair',
  poor: 'Connection: poor. The picture or sound may break up.',
};
