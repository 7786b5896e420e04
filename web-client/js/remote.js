// What arrives from the others: each voice plays through an audio element of its own, the
// first camera picture fills the main view, and any further picture (a shared screen, a guest)
// gets a view of its own. The gateway may send each track in its own stream, so tracks are
// placed by kind rather than by stream.

export class RemoteMedia {
  /**
   * `main` is the large <video>; further pictures are added to `extras` as <video> elements
   * labelled `extraLabel`; each voice gets an unseen audio element of its own.
   */
  constructor(main, extras, extraLabel) {
    this.main = main;
    this.extras = extras;
    this.extraLabel = extraLabel;
    this.main.muted = true;
    this.clear();
  }

  /**
   * Takes a peer connection's `track` event. A track is placed once media arrives on it: a
   * receiver that never carries anything must not take the main view.
   */
  add(event) {
    const { track } = event;
    if (track.kind === 'video') {
      // A picture is placed once it has decoded a frame: a receiver may unmute on padding
      // alone and still never show anything.
      const probe = document.createElement('video');
      probe.muted = true;
      probe.srcObject = new MediaStream([track]);
      probe.addEventListener('loadeddata', () => {
        probe.srcObject = null;
        this.place(track, event.streams);
      }, { once: true });
      probe.play().catch(() => {});
    } else if (track.muted) {
      track.addEventListener('unmute', () => this.place(track, event.streams), { once: true });
    } else {
      this.place(track, event.streams);
    }
  }

  place(track, streams) {
    if (track.readyState === 'ended') return;
    let element;
    if (track.kind === 'audio') {
      element = document.createElement('audio');
      element.hidden = true;
      document.body.append(element);
      this.audios.push(element);
    } else if (!this.mainVideo || this.mainVideo.readyState === 'ended') {
      this.mainVideo = track;
      element = this.main;
    } else {
      element = document.createElement('video');
      element.playsInline = true;
      element.muted = true;
      element.setAttribute('aria-label', this.extraLabel);
      this.extras.append(element);
    }
    element.autoplay = true;
    element.srcObject = new MediaStream([track]);
    const remove = () => {
      if (element === this.main) {
        this.main.srcObject = null;
        this.mainVideo = null;
      } else {
        element.remove();
      }
    };
    track.addEventListener('ended', remove);
    for (const stream of streams) {
      stream.addEventListener('removetrack', (e) => { if (e.track === track) remove(); });
    }
    this.play(element);
  }

  play(element) {
    element.play().catch(() => {
      // Held by the browser's autoplay rules: the next touch or key starts it.
      const resume = () => element.play().catch(() => {});
      document.addEventListener('pointerdown', resume, { once: true });
      document.addEventListener('keydown', resume, { once: true });
    });
  }

  /** Forgets everything (the call ended). */
  clear() {
    this.mainVideo = null;
    this.main.srcObject = null;
    this.extras.replaceChildren();
    for (const audio of this.audios || []) audio.remove();
    this.audios = [];
  }
}
