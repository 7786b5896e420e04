// Copying what a read-only field shows (a join link, a room credential): to the clipboard
// where the browser allows it, and through the field's selection where it does not.

/** Copies the value of `input`, then says `copied` in `statusEl`. */
export async function copyField(input, statusEl, copied = 'Copied.') {
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand('copy');
  }
  statusEl.textContent = copied;
}
