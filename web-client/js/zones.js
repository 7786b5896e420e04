// Wall-clock times in a named time zone (a room's), converted to and from instants. Schedulers
// book in the room's own time, wherever they sit.

function offsetAt(ms, timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

/** The instant at which it is `date` ("2026-11-24") `time` ("14:15") in `timeZone`. */
function zonedToInstant(date, time, timeZone) {
  const [y, m, d] = date.split('-').map(Number);
  const [h, min] = time.split(':').map(Number);
  const wall = Date.UTC(y, m - 1, d, h, min);
  // Twice: the offset at the first guess may differ from the offset at the answer (DST).
  let instant = wall - offsetAt(wall, timeZone);
  instant = wall - offsetAt(instant, timeZone);
  return new Date(instant);
}

/**
 * The window a scheduler typed as a date, a start and an end time in `timeZone`, as ISO
 * instants. An end at or before the start is on the next day: a consultation that runs past
 * midnight. (A slip of the finger the other way becomes a window of nearly a day, which the
 * gateway refuses: consultations are at most four hours.)
 */
export function zonedWindow(date, startTime, endTime, timeZone) {
  const start = zonedToInstant(date, startTime, timeZone);
  let end = zonedToInstant(date, endTime, timeZone);
  if (end <= start) {
    const [y, m, d] = date.split('-').map(Number);
    const nextDay = new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
    end = zonedToInstant(nextDay, endTime, timeZone);
  }
  return { start: start.toISOString(), end: end.toISOString() };
}

/** {date: "2026-11-24", time: "14:15"} for the instant `when` in `timeZone`. */
export function instantToZoned(when, timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  }).formatToParts(new Date(when)).map((p) => [p.type, p.value]));
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
}
