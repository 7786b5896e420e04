// The connection check: round-trip time, and bandwidth both ways, to the gateway, measured with
// the gateway's probe endpoints, plotted on a canvas and judged pass or warn.

/** Below these a video call suffers: the check then warns. Both sides send and receive video. */
export const THRESHOLDS = { minMbps: 1.0, minUpMbps: 1.0, maxRttMs: 400 };

/** The headers that carry each kind of credential on an upload, whose body is the bytes. */
const CREDENTIAL_HEADERS = { device_credential: 'X-Device-Credential', link: 'X-Join-Link' };

async function fetchProbe(credential, bytes) {
  const started = performance.now();
  const response = await fetch('/api/v1/probe', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...credential, bytes }),
    cache: 'no-store',
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error(body.message || `HTTP ${response.status}`), { code: body.code });
  }
  const data = await response.arrayBuffer();
  return { ms: performance.now() - started, bytes: data.byteLength };
}

/** Random bytes, so that no compression on the way flatters the figure. */
function randomBytes(size) {
  const bytes = new Uint8Array(size);
  // getRandomValues fills at most 64 KiB at a time.
  for (let offset = 0; offset < size; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)));
  }
  return bytes;
}

async function uploadProbe(credential, bytes) {
  const headers = { 'Content-Type': 'application/octet-stream' };
  for (const [field, header] of Object.entries(CREDENTIAL_HEADERS)) {
    if (credential[field]) headers[header] = credential[field];
  }
  const body = randomBytes(bytes);
  const started = performance.now();
  const response = await fetch('/api/v1/probe/upload', { method: 'POST', headers, body, cache: 'no-store' });
  const receipt = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(receipt.message || `HTTP ${response.status}`), { code: receipt.code });
  return { ms: performance.now() - started, bytes: receipt.received };
}

/** Mbit/s for a transfer of `sample.bytes` that took `sample.ms`, less one round trip. */
function rate(sample, rtts) {
  const seconds = Math.max(0.001, (sample.ms - Math.min(...rtts)) / 1000);
  return (sample.bytes * 8) / seconds / 1e6;
}

/**
 * Measures with `credential` ({device_credential} or {link}) and returns
 * {rtts: [ms], rates: [Mbit/s down], upRates: [Mbit/s up], rttMs, mbps, upMbps, pass}.
 * Calls `onSample` after each sample.
 */
export async function measure(credential, onSample = () => {}) {
  const result = { rtts: [], rates: [], upRates: [], rttMs: null, mbps: null, upMbps: null, pass: false };
  for (let i = 0; i < 5; i += 1) {
    result.rtts.push((await fetchProbe(credential, 0)).ms);
    onSample(result);
  }
  for (const size of [64 * 1024, 256 * 1024, 512 * 1024, 1024 * 1024]) {
    result.rates.push(rate(await fetchProbe(credential, size), result.rtts));
    onSample(result);
  }
  // Smaller than the downloads: a prison's uplink is often the narrow side.
  for (const size of [64 * 1024, 256 * 1024, 512 * 1024]) {
    result.upRates.push(rate(await uploadProbe(credential, size), result.rtts));
    onSample(result);
  }
  const sorted = [...result.rtts].sort((a, b) => a - b);
  result.rttMs = sorted[Math.floor(sorted.length / 2)];
  // The larger transfers say more about the link than the first, which TCP is still ramping.
  result.mbps = Math.max(...result.rates.slice(1));
  result.upMbps = Math.max(...result.upRates.slice(1));
  result.pass = result.mbps >= THRESHOLDS.minMbps && result.upMbps >= THRESHOLDS.minUpMbps
    && result.rttMs <= THRESHOLDS.maxRttMs;
  return result;
}

/** Draws round-trip times and rates as two bar series on `canvas`. */
export function plot(canvas, result) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  ctx.font = '14px system-ui, sans-serif';
  const third = width / 3;
  const series = [
    { values: result.rtts, max: Math.max(THRESHOLDS.maxRttMs, ...result.rtts), limit: THRESHOLDS.maxRttMs, x: 0, label: 'Round trip (ms)', colour: '#1d70b8' },
    { values: result.rates, max: Math.max(THRESHOLDS.minMbps * 4, ...result.rates), limit: THRESHOLDS.minMbps, x: third, label: 'Download (Mbit/s)', colour: '#00703c' },
    { values: result.upRates, max: Math.max(THRESHOLDS.minUpMbps * 4, ...result.upRates), limit: THRESHOLDS.minUpMbps, x: 2 * third, label: 'Upload (Mbit/s)', colour: '#4c2c92' },
  ];
  for (const s of series) {
    ctx.fillStyle = '#0b0c0c';
    ctx.fillText(s.label, s.x + 8, 18);
    const top = 28;
    const bottom = height - 8;
    const bar = (third - 34) / 5;
    s.values.forEach((v, i) => {
      const h = ((bottom - top) * v) / s.max;
      ctx.fillStyle = s.colour;
      ctx.fillRect(s.x + 12 + i * (bar + 2), bottom - h, bar, h);
    });
    const y = bottom - ((bottom - top) * s.limit) / s.max;
    ctx.strokeStyle = '#d4351c';
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(s.x + 8, y);
    ctx.lineTo(s.x + third - 8, y);
    ctx.stroke();
    ctx.setLineDash([]);
  }
}

/** A sentence for the result, for people and screen readers. */
export function describe(result) {
  const figures = `Download ${result.mbps.toFixed(1)} Mbit/s, upload ${result.upMbps.toFixed(1)} Mbit/s, `
    + `round trip ${Math.round(result.rttMs)} ms.`;
  if (result.pass) return `Connection: good. ${figures}`;
  const problems = [];
  if (result.mbps < THRESHOLDS.minMbps) problems.push('the connection is slow');
  if (result.upMbps < THRESHOLDS.minUpMbps) problems.push('sending is slow, so the other side may not see you well');
  if (result.rttMs > THRESHOLDS.maxRttMs) problems.push('the connection is slow to answer');
  return `Connection: warning, ${problems.join(' and ')}; the picture may freeze. ${figures}`;
}
