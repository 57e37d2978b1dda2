// flowvj browser view: draws each frame from /ws scaled to fill the screen, shows the meters and
// the engine's notices as captions, and sends control changes back as {"control": name, "value": v}
// (an action such as next_image as {"control": name, "value": null}). The stage controls (blackout,
// freeze, next image, next mode) have the window's keys; see KEYS below.
// Frame message (binary): uint16 LE width, uint16 LE height, uint8 encoding, then the pixels:
// encoding 0 = width*height*3 RGB bytes, rows top to bottom; 1 = a JPEG (see server.py).
"use strict";

const view = document.getElementById("view");
const panel = document.getElementById("panel");
const ctx = view.getContext("2d");
const small = document.createElement("canvas");  // a raw frame at its own size, scaled up by drawImage
const smallCtx = small.getContext("2d");
let image = null;                                   // ImageData reused while the raw size is unchanged
let source = null;                                  // what draw() scales: `small` or a decoded JPEG
let decoding = false, nextJpeg = null;              // one JPEG decode at a time; the latest waits
let socket = null;
let receivedTimes = [];                             // arrival times of the last second's frames
let noticeId = null;                                // the last notice_id seen (null: no meters yet)
const SEND_INTERVAL_MS = 50;                        // controls go out at most ~20 times a second:
const queued = new Map();                           // the server drops a page over ~50 messages/s
let actionCount = 0;                                // (queued: key -> message, in the order asked for)
let flushTimer = null, lastFlush = -Infinity;
// The token (bound beyond loopback only) comes in the URL's fragment, which is never sent to the
// server nor logged; the page passes it on /ws, keeps it for a reload of this tab, and clears it
// from the address bar, where anyone looking at the screen would read it.
const token = new URLSearchParams(location.hash.slice(1)).get("token")
  || sessionStorage.getItem("flowvj.token");
if (token) sessionStorage.setItem("flowvj.token", token);
if (location.hash) history.replaceState(null, "", location.pathname + location.search);

window.flowvjFrames = 0;                            // frames drawn since the page opened (tests read it)
window.flowvjFrameSize = null;                      // [width, height] of the last frame drawn
window.flowvjState = null;                          // the last state message from the server
window.flowvjNoticeId = null;                       // the notice_id of the last meters handled

function fitCanvas() {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(view.clientWidth * ratio), height = Math.round(view.clientHeight * ratio);
  if (view.width !== width || view.height !== height) {
    view.width = width;
    view.height = height;
    draw();
  }
}

function draw() {
  if (!source) return;
  // aspect-fill: scale so the frame covers the whole canvas, centred, the overflow cropped
  const scale = Math.max(view.width / source.width, view.height / source.height);
  const w = source.width * scale, h = source.height * scale;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "low";  // bilinear, as the window (SDL linear): "high" (bicubic) cost
  // Chromium 15-17 ms of CPU a frame against 9-11 at 192x108 -> 1280x720, on the cores the show decodes on
  ctx.drawImage(source, (view.width - w) / 2, (view.height - h) / 2, w, h);
}

function showSource(next) {
  if (source && source !== small && source !== next) source.close();  // free the previous bitmap
  source = next;
  draw();
  window.flowvjFrames += 1;
  window.flowvjFrameSize = [next.width, next.height];
  const now = performance.now();
  receivedTimes.push(now);
  while (receivedTimes[0] < now - 1000) receivedTimes.shift();
}

function showFrame(buffer) {
  if (buffer.byteLength < 5) return;
  const header = new DataView(buffer, 0, 5);
  const width = header.getUint16(0, true), height = header.getUint16(2, true);
  const pixels = new Uint8Array(buffer, 5);
  if (header.getUint8(4) === 1) return showJpeg(pixels);
  if (header.getUint8(4) !== 0 || pixels.length !== width * height * 3) return;
  if (!image || image.width !== width || image.height !== height) {
    small.width = width;
    small.height = height;
    image = smallCtx.createImageData(width, height);
    image.data.fill(255);                           // alpha stays opaque
  }
  const rgba = image.data;
  for (let i = 0, j = 0; i < pixels.length; i += 3, j += 4) {
    rgba[j] = pixels[i];
    rgba[j + 1] = pixels[i + 1];
    rgba[j + 2] = pixels[i + 2];
  }
  smallCtx.putImageData(image, 0, 0);
  showSource(small);
}

function showJpeg(bytes) {
  // createImageBitmap decodes off the main thread; frames arriving meanwhile replace each other
  if (decoding) { nextJpeg = bytes; return; }
  decoding = true;
  createImageBitmap(new Blob([bytes], { type: "image/jpeg" }))
    .then(showSource, () => {})                     // a frame that does not decode is skipped
    .finally(() => {
      decoding = false;
      if (nextJpeg) { const next = nextJpeg; nextJpeg = null; showJpeg(next); }
    });
}

function showState(state) {
  window.flowvjState = state;
  const sets = document.getElementById("image_set");
  const names = state.image_sets || [];
  if ([...sets.options].map((o) => o.value).join("\n") !== names.join("\n")) {
    sets.replaceChildren(...names.map((name) => new Option(name, name)));
  }
  // scenes (with --scenes only): the select lists them, "save scene" saves the show's state
  const scenes = Array.isArray(state.scenes) ? state.scenes : null;
  for (const element of document.querySelectorAll(".scenes")) element.hidden = scenes === null;
  const sceneSelect = document.getElementById("scene");
  if (scenes && [...sceneSelect.options].slice(1).map((o) => o.value).join("\n") !== scenes.join("\n")) {
    const current = sceneSelect.value;
    const placeholder = new Option("", "", true, !scenes.includes(current));
    placeholder.disabled = true;
    sceneSelect.replaceChildren(placeholder, ...scenes.map((name) => new Option(name, name)));
    if (scenes.includes(current)) sceneSelect.value = current;
  }
  for (const [name, value] of Object.entries(state.controls || {})) {
    const input = document.querySelector(`[data-control="${name}"]`);
    if (input && document.activeElement !== input) input.value = value;
  }
  for (const name of SWITCHES) {
    if (state.controls && name in state.controls) showSwitch(name, Boolean(state.controls[name]));
  }
  const armed = state.controls && state.controls.midi_learn;    // null: the show has not said yet
  if (typeof armed === "string") showLearning(armed ? "armed" : "", armed);
  showValues();
}

// Blackout and freeze: the buttons show the show's state (from each state message); a click or
// key asks for the other state (a value, not a toggle, so a stale page cannot flip it back).
const SWITCHES = ["blackout", "freeze", "audience"];
const switchOn = { blackout: false, freeze: false, audience: true };
const switchText = { blackout: ["blackout", "BLACKOUT ON"], freeze: ["freeze", "FROZEN"],
                     audience: ["audience off", "audience on"] };

function showSwitch(name, on) {
  switchOn[name] = on;
  const button = document.getElementById(name);
  button.setAttribute("aria-pressed", String(on));
  button.textContent = switchText[name][Number(on)];
}

function flipSwitch(name) {
  const on = !switchOn[name];
  showSwitch(name, on);                             // at once; the next state message confirms it
  send(name, on ? 1 : 0);
}

// MIDI learn: "learn" arms the chosen control, "arming" until the show's state says what is
// armed (every page shows it; a show without a MIDI controller says why in a caption and arms
// nothing); pressed again, it disarms. Learning a knob disarms it in the show, and so here.
const learnButton = document.getElementById("midi_learn");
let learning = { state: "", target: "" };           // state: "", "arming" or "armed"

function showLearning(state, target) {
  learning = { state: state, target: target };
  learnButton.dataset.learning = state;
  learnButton.textContent = state === "armed" ? `move a knob for ${target} (cancel)`
    : state === "arming" ? `arming ${target}… (cancel)` : "learn";
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function showMeters(meters) {
  // every key may be missing (an older engine, a test): each meter then shows "--"
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("fps", isNumber(meters.fps) ? `${meters.fps.toFixed(0)} fps` : "-- fps");
  set("frame_ms", isNumber(meters.frame_ms) ? `${meters.frame_ms.toFixed(1)} ms` : "-- ms");
  // tempo_bpm is null (or 0) until the tempo locks: "--", never "0.0 BPM"
  set("tempo", isNumber(meters.tempo_bpm) && meters.tempo_bpm > 0 ? `${meters.tempo_bpm.toFixed(1)} BPM` : "-- BPM");
  set("gen_size", typeof meters.gen_size === "string" ? meters.gen_size : "--");
  set("detail_meter", typeof meters.detail === "string" && isNumber(meters.detail_amount)
    ? `detail ${meters.detail} ${meters.detail_amount.toFixed(1)}` : "--");
  set("meter_mode", typeof meters.mode === "string" ? meters.mode : "");
  const levels = document.getElementById("levels");
  const values = Array.isArray(meters.bands) ? meters.bands : [];
  while (levels.children.length > values.length) levels.lastChild.remove();
  while (levels.children.length < values.length) levels.appendChild(document.createElement("div"));
  values.forEach((v, i) => {
    const level = isNumber(v) ? Math.min(Math.max(v, 0), 1) : 0;
    levels.children[i].style.height = `${Math.round(100 * level)}%`;
  });
  const sceneSelect = document.getElementById("scene");     // a scene recalled from anywhere
  if (typeof meters.scene === "string" && document.activeElement !== sceneSelect
      && [...sceneSelect.options].some((o) => o.value === meters.scene)) sceneSelect.value = meters.scene;
  if (meters.notice_id !== undefined && meters.notice_id !== noticeId) {
    // the first meters only note the id: a page opened later shows no stale notice
    if (noticeId !== null && meters.notice) showCaption(String(meters.notice));
    noticeId = meters.notice_id;
  }
  window.flowvjNoticeId = noticeId;
}

// Captions: each new notice (mode changed, image set loaded...) shows ~2 s over the picture, then
// fades; the "captions" box turns them off for the audience (remembered by this browser).
const caption = document.getElementById("caption");
const captions = document.getElementById("captions");
let captionTimer = null;
captions.checked = localStorage.getItem("flowvj.captions") !== "off";
caption.hidden = !captions.checked;
captions.addEventListener("change", showCaptionsChoice);

function showCaptionsChoice() {
  localStorage.setItem("flowvj.captions", captions.checked ? "on" : "off");
  caption.hidden = !captions.checked;
  if (!captions.checked) caption.classList.remove("shown");
}

function showCaption(text) {
  if (!captions.checked) return;
  caption.textContent = text;
  caption.classList.add("shown");
  clearTimeout(captionTimer);
  captionTimer = setTimeout(() => caption.classList.remove("shown"), 2000);
}

// The audience (serve --audience): the QR code of the phones' page, full screen on a click (a
// click or Esc hides it), the tally of their votes, and the switch that turns their say off.
window.flowvjTally = null;                          // the last tally from the server (tests read it)

function showAudience(message) {
  document.getElementById("audience_row").hidden = false;
  document.getElementById("qr").src = message.qr;
  document.getElementById("qr_url").textContent = (message.urls || [])[0] || "";
}

function leaders(counts, n) {
  return Object.entries(counts || {}).filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([name, c]) => `${name} ${c}`).join(", ");
}

function showTally(tally) {
  window.flowvjTally = tally;
  const mood = tally.mood || {};
  const parts = [`${tally.voters} voting`, `calm ${mood.calm || 0} · intense ${mood.intense || 0}`];
  const images = leaders(tally.image, 3), sets = leaders(tally.set, 3), scenes = leaders(tally.scene, 3);
  if (images) parts.push(`images: ${images}`);
  if (sets) parts.push(`sets: ${sets}`);
  if (scenes) parts.push(`scenes: ${scenes}`);
  if (tally.control_attempts) parts.push(`${tally.control_attempts} control attempts refused`);
  document.getElementById("tally").textContent = parts.join(" · ");
}

function toggleQr(shown) {
  document.getElementById("qr_screen").hidden = !shown;
}
document.getElementById("show_qr").addEventListener("click", () => toggleQr(true));
document.getElementById("qr_screen").addEventListener("click", () => toggleQr(false));
document.getElementById("audience").addEventListener("click", () => flipSwitch("audience"));
document.addEventListener("keydown", (event) => { if (event.key === "Escape") toggleQr(false); });

function showValues() {
  for (const out of document.querySelectorAll("output")) {
    out.textContent = Number(document.getElementById(out.htmlFor).value).toFixed(2);
  }
}

function connect() {
  const status = document.getElementById("status");
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${query}`);
  socket.binaryType = "arraybuffer";
  window.flowvjSocket = socket;
  socket.onopen = () => { status.textContent = ""; };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") return showFrame(event.data);
    const message = JSON.parse(event.data);
    if (message.type === "state") showState(message);
    else if (message.type === "meters") showMeters(message.meters || {});
    else if (message.type === "audience") showAudience(message);
    else if (message.type === "tally") showTally(message);
  };
  socket.onclose = () => {                          // the server restarted or the network dropped
    status.textContent = "reconnecting…";
    setTimeout(connect, 1000);
  };
}

function sendAction(name) {
  // an action (next_image, ...) is never merged with another: each press counts
  enqueue(`action ${actionCount++}`, { control: name, value: null });
}

function send(name, value) {
  // the latest value per control, moved behind what was asked for before it (b then n: in order)
  queued.delete(name);
  enqueue(name, { control: name, value: value });
}

function enqueue(key, message) {
  // sent at once or, within SEND_INTERVAL_MS of the last send, then
  queued.set(key, message);
  if (flushTimer === null) {
    flushTimer = setTimeout(flush, Math.max(0, lastFlush + SEND_INTERVAL_MS - performance.now()));
  }
}

function flush() {
  flushTimer = null;
  lastFlush = performance.now();
  if (socket && socket.readyState === WebSocket.OPEN) {
    for (const message of queued.values()) socket.send(JSON.stringify(message));
  }
  queued.clear();
}

for (const input of document.querySelectorAll("[data-control]")) {
  const numeric = input.type === "range";
  input.addEventListener(numeric ? "input" : "change", () => {
    send(input.dataset.control, numeric ? Number(input.value) : input.value);
    showValues();
  });
}

document.getElementById("save_scene").addEventListener("click", () => {
  const name = document.getElementById("scene_name").value.trim();
  if (name) send("save_scene", name);
});

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen();
}
document.getElementById("fullscreen").addEventListener("click", toggleFullscreen);

for (const name of ["blackout", "freeze"]) document.getElementById(name).addEventListener("click", () => flipSwitch(name));
for (const name of ["next_image", "next_mode"]) {
  document.getElementById(name).addEventListener("click", () => sendAction(name));
}
learnButton.addEventListener("click", () => {
  if (learning.state) {
    send("midi_learn", "");
    showLearning("", "");
  } else {
    const target = document.getElementById("learn_target").value;
    send("midi_learn", target);
    showLearning("arming", target);
  }
});

function nudgeDetail(step) {
  // [ and ]: the detail amount by 0.1, as the window's keys (the slider shows it at once)
  const slider = document.getElementById("detail");
  const value = Math.min(2, Math.max(0, Math.round((Number(slider.value) + step) * 100) / 100));
  slider.value = value;
  send("detail", value);
  showValues();
}

function recallScene(place) {
  // 1-9: the scene at that place in the --scenes file, as in the window (none: nothing happens)
  const scenes = window.flowvjState && window.flowvjState.scenes;
  if (Array.isArray(scenes) && place <= scenes.length) send("scene", scenes[place - 1]);
}

function toggleCaptions() {
  captions.checked = !captions.checked;
  showCaptionsChoice();
}

function togglePanel() {
  // Tab / F1, the window's meter key: the panel (controls and meters) off for a clean picture
  panel.classList.toggle("off");
}

// The window's keys (README "Keys in the window"), except q / Esc: the page never stops the show
// (Esc leaves full screen, as in any page). Ignored while typing in a text field, with Ctrl, Alt
// or Cmd held (the browser's own shortcuts), and when held down (a repeating b would strobe).
const KEYS = {
  b: () => flipSwitch("blackout"), p: () => flipSwitch("freeze"),
  n: () => sendAction("next_image"), " ": () => sendAction("next_image"), m: () => sendAction("next_mode"),
  c: toggleCaptions, f: toggleFullscreen, Tab: togglePanel, F1: togglePanel,
  "[": () => nudgeDetail(-0.1), "]": () => nudgeDetail(0.1),
};

function typing(element) {
  if (!element) return false;
  if (element.isContentEditable || element.tagName === "TEXTAREA") return true;
  return element.tagName === "INPUT" && !["range", "checkbox", "button"].includes(element.type);
}

function keyAction(event) {
  if (event.ctrlKey || event.altKey || event.metaKey || typing(event.target)) return null;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (/^[1-9]$/.test(key)) return () => recallScene(Number(key));
  return KEYS[key] || null;
}

document.addEventListener("keydown", (event) => {
  const action = keyAction(event);
  if (action === null) return;
  event.preventDefault();                           // no select type-ahead, no button press, no Tab focus
  if (!event.repeat) action();
});
document.addEventListener("keyup", (event) => {     // a focused button clicks on space's keyup
  if (keyAction(event) !== null) event.preventDefault();
});

// The panel fades after 3 s without the mouse, so the show is clean; any movement brings it back.
let idleTimer = null;
function wakePanel() {
  panel.classList.remove("idle");
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => panel.classList.add("idle"), 3000);
}
document.addEventListener("mousemove", wakePanel);
document.addEventListener("keydown", wakePanel);

setInterval(() => {
  const now = performance.now();
  while (receivedTimes.length && receivedTimes[0] < now - 1000) receivedTimes.shift();
  document.getElementById("received").textContent = `${receivedTimes.length} fps`;
}, 500);

window.addEventListener("resize", fitCanvas);
fitCanvas();
showValues();
showLearning("", "");
wakePanel();
connect();

