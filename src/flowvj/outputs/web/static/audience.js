// flowvj audience page: phones vote for an image of the set on screen, a set, a mood, and a scene
// of those the VJ allowed (none allowed: no scene section). The server (outputs/web/audience.py)
// takes one ballot per phone every few seconds: the page sends the choices it holds at most that
// often, and again every refresh_s so the vote stays counted.
// Ballot: {"image": name|null, "set": name|null, "mood": "calm"|"intense"|null, "scene": name|null},
// any of them.
// The token comes in the URL's fragment (the QR code's), never sent in a request line; the
// phone's id is the server's, kept here so a reload stays the same voter.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token")
  || sessionStorage.getItem("flowvj.audience");
if (token) sessionStorage.setItem("flowvj.audience", token);
if (location.hash) history.replaceState(null, "", location.pathname + location.search);

const KINDS = ["image", "set", "mood", "scene"];
const chosen = { image: null, set: null, mood: null, scene: null };
let socket = null, intervalMs = 3000, refreshMs = 50000;
let lastSent = -Infinity, sendTimer = null, refreshTimer = null, dirty = false;
window.flowvjAudience = { accepted: 0, refused: 0, replies: [], choices: null, on: null };

function status(text) { document.getElementById("status").textContent = text; }

function showChoices(choices, on) {
  window.flowvjAudience.choices = choices;
  window.flowvjAudience.on = on;
  document.getElementById("paused").hidden = on;
  for (const kind of KINDS) {
    const names = Array.isArray(choices[kind]) ? choices[kind] : [];
    const box = document.getElementById(kind);
    document.getElementById(`${kind}_section`).hidden = kind === "set" ? names.length < 2 : !names.length;
    if (chosen[kind] !== null && !names.includes(chosen[kind])) chosen[kind] = null;
    box.replaceChildren(...names.map((name) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name.replaceAll("_", " ");
      button.dataset.choice = name;
      button.setAttribute("aria-pressed", String(chosen[kind] === name));
      button.addEventListener("click", () => choose(kind, name));
      return button;
    }));
  }
}

function choose(kind, name) {
  chosen[kind] = chosen[kind] === name ? null : name;           // a second tap takes it back
  for (const button of document.getElementById(kind).children) {
    button.setAttribute("aria-pressed", String(button.dataset.choice === chosen[kind]));
  }
  dirty = true;
  schedule();
}

function schedule() {
  // at most one ballot every intervalMs: a burst of taps goes out as one
  if (sendTimer !== null) return;
  sendTimer = setTimeout(sendBallot, Math.max(0, lastSent + intervalMs + 50 - performance.now()));
}

function sendBallot() {
  sendTimer = null;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (!KINDS.some((kind) => chosen[kind] !== null) && !dirty) return;
  lastSent = performance.now();
  dirty = false;
  socket.send(JSON.stringify(chosen));
  status("sending…");
}

function connect() {
  const voter = localStorage.getItem("flowvj.voter");
  const query = new URLSearchParams({ token: token || "" });
  if (voter) query.set("voter", voter);
  socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/audience/ws?${query}`);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "welcome") {
      localStorage.setItem("flowvj.voter", message.voter);
      intervalMs = 1000 * message.interval_s;
      refreshMs = 1000 * message.refresh_s;
      showChoices(message.choices, message.on);
      status("tap to vote");
      clearInterval(refreshTimer);
      refreshTimer = setInterval(schedule, refreshMs);
      if (KINDS.some((kind) => chosen[kind] !== null)) schedule();   // a reconnect: vote again
    } else if (message.type === "choices") {
      showChoices(message.choices, message.on);
    } else if (message.type === "ballot") {
      const audience = window.flowvjAudience;
      audience.replies.push(message);
      if (message.accepted) {
        audience.accepted += 1;
        status("counted: thank you");
      } else {
        audience.refused += 1;
        status(message.retry_s ? "a moment…" : `not counted: ${message.reason}`);
        if (message.retry_s) { dirty = true; schedule(); }
      }
    }
  };
  socket.onclose = () => {
    status("reconnecting…");
    setTimeout(connect, 2000);
  };
}

connect();
