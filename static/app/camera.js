// The webcam: a camera shown in a <video> (opened, switched between the front and the back camera
// of a phone, closed), its frames, and "hold to record" bursts.
import { ask } from './messages.js';
import { status } from './state.js';

const BURST_INTERVAL_MS = 150;

/// The camera shown in `video`. A phone has a front ('user') and a back ('environment') camera;
/// `switchCamera` goes from one to the other, and on a computer with two webcams (which name no
/// facing) from one to the next.
export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.facing = 'user';
  }

  get isOpen() {
    return this.stream !== null;
  }

  async open(constraints = { facingMode: { ideal: this.facing } }) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, ...constraints }, audio: false });
    this.close();
    this.stream = stream;
    this.video.srcObject = stream;
    this.video.hidden = false;
    await this.video.play();
  }

  close() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
    this.video.srcObject = null;
    this.video.hidden = true;
  }

  /// How many cameras the device has (their names are only listed once one was allowed).
  static async count() {
    const devices = await navigator.mediaDevices?.enumerateDevices?.().catch(() => []) ?? [];
    return devices.filter((d) => d.kind === 'videoinput').length;
  }

  /// The other camera: the back one after the front one and back again; where the browser gives the
  /// same camera for the other facing, the next camera in the device's list.
  async switchCamera() {
    const before = this.stream?.getVideoTracks()[0]?.getSettings().deviceId;
    this.facing = this.facing === 'user' ? 'environment' : 'user';
    await this.open();
    const now = this.stream.getVideoTracks()[0]?.getSettings().deviceId;
    if (before && now === before) {
      const ids = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput').map((d) => d.deviceId);
      const next = ids[(ids.indexOf(before) + 1) % ids.length];
      if (next && next !== before) await this.open({ deviceId: { exact: next } });
    }
  }
}

export function grabFrame(video) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0);
  const { data, width, height } = context.getImageData(0, 0, canvas.width, canvas.height);
  return { rgba: data.buffer, width, height };
}

/// "Hold to record": frames are captured while the button is held (mouse, finger, Space or Enter),
/// each embedded by the worker and handed to `onFrame(embedding)`.
export function wireBurst(button, video, onFrame) {
  let timer = null;
  const capture = async () => {
    if (!video.videoWidth) return;
    const frame = grabFrame(video);
    try {
      onFrame(await ask({ type: 'embed-rgba', ...frame }, [frame.rgba]));
    } catch (e) {
      status(`Webcam frame: ${e.message}`, true);
    }
  };
  const startBurst = (event) => {
    event.preventDefault();
    if (timer) return;
    capture();
    timer = setInterval(capture, BURST_INTERVAL_MS);
    button.classList.add('recording');
  };
  const stopBurst = () => {
    clearInterval(timer);
    timer = null;
    button.classList.remove('recording');
  };
  button.addEventListener('pointerdown', startBurst);
  ['pointerup', 'pointerleave', 'pointercancel', 'blur'].forEach((e) => button.addEventListener(e, stopBurst));
  // A finger held on the button is a recording, not a long-press menu (the CSS stops scrolling too).
  button.addEventListener('contextmenu', (e) => e.preventDefault());
  button.addEventListener('keydown', (e) => { if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) startBurst(e); });
  button.addEventListener('keyup', (e) => { if (e.key === ' ' || e.key === 'Enter') stopBurst(); });
}
