// flowvj browser view: draws each small RGB frame from /ws scaled to fill the screen, shows the
// meters, and sends control changes back as {"control": name, "value": v}.
// Frame message (binary): uint16 LE width, uint16 LE height, then width*height*3 RGB bytes.
"use strict";

const view = document.getElementById("view");
const ctx = view.getContext("2d");
const small = document.createElement("canvas");  // the frame at its own size, scaled up by drawImage
const smallCtx = small.getContext("2d");
let image = null;                                   // ImageData reused while the size is unchanged
let socket = null;
let receivedTimes = [];                             // arrival times of the last second's frames

window.flowvjFrames = 0;                            // frames drawn since the page opened (tests read it)
window.flowvjState = null;                          // the last state message from the server

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
  if (!image) return;
  // aspect-fill: scale so the frame covers the whole canvas, centred, the overflow cropped
  const scale = Math.max(view.width / small.width, view.height / small.height);
  const w = small.width * scale, h = small.height * scale;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(small, (view.width - w) / 2, (view.height - h) / 2, w, h);
}

function showFrame(buffer) {
  const header = new DataView(buffer, 0, 4);
  const width = header.getUint16(0, true), height = header.getUint16(2, true);
  const rgb = new Uint8Array(buffer, 4);
  if (rgb.length !== width * height * 3) return;
  if (!image || image.width !== width || image.height !== height) {
    small.width = width;
    small.height = height;
    image = smallCtx.createImageData(width, height);
    image.data.fill(255);                           // alpha stays opaque
  }
  const rgba = image.data;
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgba[j] = rgb[i];
    rgba[j + 1] = rgb[i + 1];
    rgba[j + 2] = rgb[i + 2];
  }
  smallCtx.putImageData(image, 0, 0);
  draw();
  window.flowvjFrames += 1;
  const now = performance.now();
  receivedTimes.push(now);
  while (receivedTimes[0] < now - 1000) receivedTimes.shift();
}

function showState(state) {
  window.flowvjState = state;
  const sets = document.getElementById("image_set");
  const names = state.image_sets || [];
  if ([...sets.options].map((o) => o.value).join("\n") !== names.join("\n")) {
    sets.replaceChildren(...names.map((name) => new Option(name, name)));
  }
  for (const [name, value] of Object.entries(state.controls || {})) {
    const input = document.getElementById(name);
    if (input && document.activeElement !== input) input.value = value;
  }
  showValues();
}

function showMeters(meters) {
  const tempo = meters.tempo_bpm ?? meters.tempo;
  document.getElementById("tempo").textContent =
    typeof tempo === "number" ? `${tempo.toFixed(1)} bpm` : "– bpm";
  const levels = document.getElementById("levels");
  const values = Array.isArray(meters.levels) ? meters.levels : [];
  while (levels.children.length > values.length) levels.lastChild.remove();
  while (levels.children.length < values.length) levels.appendChild(document.createElement("div"));
  values.forEach((v, i) => {
    levels.children[i].style.height = `${Math.round(100 * Math.min(Math.max(v, 0), 1))}%`;
  });
}

function showValues() {
  for (const out of document.querySelectorAll("output")) {
    out.textContent = Number(document.getElementById(out.htmlFor).value).toFixed(2);
  }
}

function connect() {
  const status = document.getElementById("status");
  socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  window.flowvjSocket = socket;
  socket.onopen = () => { status.textContent = ""; };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") return showFrame(event.data);
    const message = JSON.parse(event.data);
    if (message.type === "state") showState(message);
    else if (message.type === "meters") showMeters(message.meters);
  };
  socket.onclose = () => {                          // the server restarted or the network dropped
    status.textContent = "reconnecting…";
    setTimeout(connect, 1000);
  };
}

function send(name, value) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ control: name, value: value }));
  }
}

for (const input of document.querySelectorAll("[data-control]")) {
  const numeric = input.type === "range";
  input.addEventListener(numeric ? "input" : "change", () => {
    send(input.dataset.control, numeric ? Number(input.value) : input.value);
    showValues();
  });
}

document.getElementById("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen();
});

// The panel fades after 3 s without the mouse, so the show is clean; any movement brings it back.
const panel = document.getElementById("panel");
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
  document.getElementById("fps").textContent = `${receivedTimes.length} fps`;
}, 500);

window.addEventListener("resize", fitCanvas);
fitCanvas();
showValues();
wakePanel();
connect();
