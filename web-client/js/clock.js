// The gateway's clock as seen from this page. Windows, countdowns and remaining times follow
// the gateway, so a kiosk whose own clock is wrong still joins on time.

let skewMs = 0;

/** Records the gateway's time (RFC 3339), as just received. */
export function syncWith(serverTime) {
  const server = Date.parse(serverTime);
  if (!Number.isNaN(server)) skewMs = server - Date.now();
}

/** Milliseconds since the epoch, by the gateway's clock. */
export function now() {
  return Date.now() + skewMs;
}

/** "14:15" in `timeZone` (the viewer's own when absent). */
export function formatTime(time, timeZone) {
  return new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', timeZone }).format(new Date(time));
}

/** "Tuesday 24 November" in `timeZone`. */
export function formatDay(time, timeZone) {
  return new Intl.DateTimeFormat('en-GB', { weekday: 'long', day: 'numeric', month: 'long', timeZone }).format(new Date(time));
}

/** "1 h 05 min", "4 min 30 s", "45 s": a duration a person reads at a glance. */
export function formatDuration(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, '0')} s`;
  return `${s} s`;
}

/** "12:34" for a running call timer. */
export function formatTimer(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}
