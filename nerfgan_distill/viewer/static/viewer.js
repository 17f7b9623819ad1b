// The viewer page: the view's state, sent to the server over a WebSocket; at most one request in
// flight, and while one is, changes only mark the view dirty, so the newest view is sent next and
// stale ones are never queued.
"use strict";

const $ = (id) => document.getElementById(id);
const DRAG_RADIANS_PER_PIXEL = 0.008;
const state = { yaw: 0, pitch: 0, zoom: 1 };
let info = null, socket = null, inFlight = false, dirty = false, nextId = 1, shownId = 0;

function clamp(x, lo, hi) { return Math.min(Math.max(x, lo), hi); }
function seedOf(input) { const v = Math.floor(Number(input.value)); return Number.isFinite(v) ? clamp(v, 0, 4294967295) : 0; }

function viewMessage() {
  return {
    type: "render", id: nextId++,
    seed: seedOf($("seed")), psi: Number($("psi").value),
    yaw: state.yaw, pitch: state.pitch, zoom: state.zoom,
    mix_seed: $("mix-on").checked ? seedOf($("mix-seed")) : null, mix_layer: Number($("mix-layer").value),
    interp_seed: $("interp-on").checked ? seedOf($("interp-seed")) : null, interp_t: Number($("interp-t").value),
    depth: $("depth-on").checked,
  };
}

function request() { dirty = true; pump(); }

function pump() {
  if (inFlight || !dirty || !socket || socket.readyState !== WebSocket.OPEN) return;
  dirty = false;
  inFlight = true;
  socket.send(JSON.stringify(viewMessage()));
}

function speedText(speed) {
  if (!speed) return "";
  const rate = speed.images_per_s ? `${speed.images_per_s.toFixed(1)} img/s` : "";
  return `${speed.ms.toFixed(1)} ms/frame · ${rate}`;
}

function showFrame(frame) {
  if (frame.id < shownId) return;  // an older frame than the one shown
  shownId = frame.id;
  $("teacher-img").src = frame.teacher.image;
  $("teacher-speed").textContent = speedText(frame.teacher.speed);
  if (frame.teacher.depth) $("depth-img").src = frame.teacher.depth;
  if (frame.student) {
    $("student-img").src = frame.student.image;
    $("difference-img").src = frame.difference;
    $("student-speed").textContent = speedText(frame.student.speed);
    $("psnr").textContent = frame.psnr == null ? "identical" : `PSNR ${frame.psnr.toFixed(1)} dB`;
    const t = frame.teacher.speed.median_ms, s = frame.student.speed.median_ms;
    $("speedup").textContent = s > 0 ? `student ${(t / s).toFixed(2)}x the teacher's frame rate (median of recent frames)` : "";
  }
  // A camera value the server clamped is taken over, but only from the newest request: an older
  // frame's view would undo the drag made since.
  if (frame.id === nextId - 1 && !dirty) {
    for (const name of ["yaw", "pitch", "zoom"]) if (frame.clamped.includes(name)) state[name] = frame.view[name];
    showCamera();
  }
  $("error").textContent = frame.clamped.length ? `clamped to range: ${frame.clamped.join(", ")}` : "";
}

function showCamera() {
  $("yaw-value").textContent = state.yaw.toFixed(2);
  $("pitch-value").textContent = state.pitch.toFixed(2);
  $("zoom-value").textContent = state.zoom.toFixed(2);
}

function setUp(message) {
  info = message;
  document.body.classList.toggle("has-student", message.has_student);
  $("mix-layer").max = String(message.num_ws);
  $("psi").min = String(message.limits.psi[0]);
  $("psi").max = String(message.limits.psi[1]);
  const r = message.trained_range;
  $("trained-range").textContent = r ?
    `trained on yaw ${r.yaw[0].toFixed(2)}…${r.yaw[1].toFixed(2)}, pitch ${r.pitch[0].toFixed(2)}…${r.pitch[1].toFixed(2)} rad` : "";
  $("status").textContent = `connected · ${message.resolution} px · ${message.device}`;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.onopen = () => { inFlight = false; request(); };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "info") { setUp(message); return; }
    if (message.type === "frame") showFrame(message);
    if (message.type === "error") $("error").textContent = message.message;
    if (message.type === "frame" || (message.type === "error" && message.id != null)) { inFlight = false; pump(); }
  };
  socket.onclose = () => {
    $("status").textContent = "disconnected · retrying";
    inFlight = false;
    setTimeout(connect, 2000);
  };
}

function orbitBy(dx, dy) {
  const limits = info ? info.limits : { yaw: Math.PI / 2, pitch: Math.PI / 3 };
  state.yaw = clamp(state.yaw - dx * DRAG_RADIANS_PER_PIXEL, -limits.yaw, limits.yaw);
  state.pitch = clamp(state.pitch - dy * DRAG_RADIANS_PER_PIXEL, -limits.pitch, limits.pitch);
  showCamera();
  request();
}

function wireControls() {
  const views = $("views");
  let last = null;
  views.addEventListener("pointerdown", (e) => {
    last = [e.clientX, e.clientY];
    views.setPointerCapture(e.pointerId);
    views.classList.add("dragging");
  });
  views.addEventListener("pointermove", (e) => {
    if (!last) return;
    orbitBy(e.clientX - last[0], e.clientY - last[1]);
    last = [e.clientX, e.clientY];
  });
  const endDrag = () => { last = null; views.classList.remove("dragging"); };
  views.addEventListener("pointerup", endDrag);
  views.addEventListener("pointercancel", endDrag);
  views.addEventListener("wheel", (e) => {
    e.preventDefault();
    const zoom = info ? info.limits.zoom : [0.5, 3];
    state.zoom = clamp(state.zoom * Math.exp(-e.deltaY * 0.001), zoom[0], zoom[1]);
    showCamera();
    request();
  }, { passive: false });
  $("random").addEventListener("click", () => { $("seed").value = String(Math.floor(Math.random() * 2 ** 31)); request(); });
  $("reset-view").addEventListener("click", () => { state.yaw = 0; state.pitch = 0; state.zoom = 1; showCamera(); request(); });
  $("depth-on").addEventListener("change", () => document.body.classList.toggle("no-depth", !$("depth-on").checked));
  for (const [input, out, digits] of [["psi", "psi-value", 2], ["mix-layer", "mix-layer-value", 0], ["interp-t", "interp-t-value", 2]]) {
    $(input).addEventListener("input", () => { $(out).textContent = Number($(input).value).toFixed(digits); });
  }
  for (const input of document.querySelectorAll("#controls input")) input.addEventListener("input", request);
}

wireControls();
connect();
