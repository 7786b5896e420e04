// Sentences for every reason and error code a participant can meet, so that nobody ever sees
// a bare code. Details from the gateway (the opening time, the reason given for a
// cancellation or lockdown) complete the sentence.

import { formatTime } from './clock.js';

const SENTENCES = {
  window_not_open: 'This consultation is not open yet.',
  window_closed: 'The time for this consultation has passed.',
  appointment_cancelled: 'This appointment was cancelled.',
  appointment_ended: 'This appointment has ended.',
  link_invalid: 'This link is not valid. Check that you copied all of it, or ask the booking team for a new one.',
  link_expired: 'This link has expired. Ask the booking team for a new one.',
  link_revoked: 'This link was withdrawn. Ask the booking team for a new one.',
  link_bound_elsewhere: 'This link was already opened in another browser. Use that browser, or ask the booking team to reissue the link.',
  device_revoked: "This room's credential was withdrawn. Ask staff to enrol the room again.",
  room_not_booked: 'There is no consultation booked for this room now.',
  room_locked_down: 'This appointment was cancelled: the prison is in lockdown.',
  role_forbidden: 'You are not allowed to do that in this consultation.',
  not_authenticated: 'The gateway did not recognise this device or link.',
  rate_limited: 'Too many attempts. Wait a minute and try again.',
  already_connected: 'This consultation is already open in another window or tab. Close it there first.',
  ended_by_clinician: 'The clinician ended the consultation.',
  terminated: 'Security staff ended this consultation.',
  left: 'You left the consultation.',
  gateway_shutdown: 'The service is restarting. Please wait a moment.',
  media_failed: 'The video connection failed. It is being set up again; reload the page if the picture does not return.',
  media_lost: 'The video connection went quiet. It is being set up again; reload the page if the picture does not return.',
  browser_unknown: 'This browser is blocking the cookie the link needs. Allow cookies for this site, then reload the page.',
  origin_forbidden: 'This page is not allowed to connect to the consultation. Open the link from the booking again.',
  audit_unavailable: 'The service cannot record this step right now, so it cannot let you in. Please try again in a minute.',
  offer_rate_limited: 'The video connection is being changed too often. Wait a few seconds and try again.',
  join_timeout: 'Joining took too long. Reload the page to try again.',
  invalid_json: 'The page sent something the gateway did not understand. Reload the page.',
  invalid_message: 'The page sent something the gateway did not understand. Reload the page.',
  unknown_type: 'The page sent something the gateway did not understand. Reload the page.',
  unsupported_version: 'This page is out of date. Reload it.',
  too_large: 'The page sent too much at once. Reload the page.',
  bad_sdp: 'The browser offered video settings the gateway cannot use. Try another browser.',
  not_joined: 'The page is not connected to the consultation yet. Reload the page.',
  already_joined: 'This page is already in the consultation.',
  not_found: 'There is no such consultation.',
  guest_link_revoked: "The booking team withdrew this guest's link. Ask them to issue a new one.",
};

/** Every code the pages can put into words. */
export const CODES = Object.keys(SENTENCES);

/**
 * The details of a refused HTTP response: its JSON `body`, with `retry_after_s` from its
 * `Retry-After` header when a limit says how many seconds to wait.
 */
export function refusalDetails(response, body) {
  const wait = Number(response.headers.get('Retry-After'));
  return Number.isInteger(wait) && wait > 0 ? { ...body, retry_after_s: wait } : body;
}

/** A wait of whole `seconds` in words that read well: "1 second", "90 seconds", "15 minutes". */
export function waitInWords(seconds) {
  if (seconds <= 1) return '1 second';
  if (seconds <= 90) return `${seconds} seconds`;
  if (seconds <= 90 * 60) return `${Math.ceil(seconds / 60)} minutes`;
  return `${Math.ceil(seconds / 3600)} hours`;
}

/**
 * The sentence for `code`. `details` may carry `opens` (RFC 3339: when joining opens),
 * `status_reason` (the reason given for a cancellation or lockdown), `retry_after_s` (whole
 * seconds to wait, for `rate_limited`) and, for an `ended` message, the gateway's own `message`.
 */
export function sentence(code, details = {}) {
  if (code === 'rate_limited' && details.retry_after_s) {
    return `Too many attempts. Try again in ${waitInWords(details.retry_after_s)}.`;
  }
  if (code === 'window_not_open' && details.opens) {
    return `This link opens at ${formatTime(details.opens)}. Come back then; this page will join by itself.`;
  }
  if (code === 'terminated' && details.message) {
    return details.message.replace(/^Security staff ended this consultation:\s*/, 'Security staff ended this consultation: ');
  }
  if (code === 'appointment_cancelled' && details.status_reason) {
    return `This appointment was cancelled: ${details.status_reason}`;
  }
  if (code === 'room_locked_down' && details.status_reason) {
    return `${SENTENCES.room_locked_down} Reason given: ${details.status_reason}`;
  }
  return SENTENCES[code] || details.message || 'Something went wrong. Reload the page to try again.';
}
