// Siaga 112 console: small progressive enhancements; every page works without them.
"use strict";

// Calls in progress: the server renders the table; refresh it every 2 s.
(function live() {
  const box = document.getElementById("live");
  if (!box) return;
  const refresh = () =>
    fetch(box.dataset.src, { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => { box.innerHTML = html; })
      .catch(() => {});
  setInterval(refresh, 2000);
})();

// The waveform: a click seeks the player; the play head follows playback.
(function waveform() {
  const wave = document.getElementById("waveform");
  const player = document.getElementById("player");
  if (!wave || !player) return;
  const head = document.getElementById("playhead");
  const width = wave.viewBox.baseVal.width;
  const durationMs = Number(wave.dataset.durationMs) || 0;
  const total = () => (isFinite(player.duration) && player.duration > 0 ? player.duration : durationMs / 1000);
  wave.addEventListener("click", (ev) => {
    const box = wave.getBoundingClientRect();
    const t = ((ev.clientX - box.left) / box.width) * total();
    if (isFinite(t)) player.currentTime = t;
    player.play().catch(() => {});
  });
  player.addEventListener("timeupdate", () => {
    const x = total() > 0 ? (player.currentTime / total()) * width : 0;
    head.setAttribute("x1", x);
    head.setAttribute("x2", x);
  });
})();

// The SIP ladder: a selected arrow shows its message (the #msg-N anchor works without this).
(function ladder() {
  document.querySelectorAll("svg.ladder a.msg").forEach((a) => {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      const n = a.getAttribute("data-msg");
      document.querySelectorAll(".sipmsg.open").forEach((m) => m.classList.remove("open"));
      document.querySelectorAll("svg.ladder a.msg.open").forEach((m) => m.classList.remove("open"));
      const msg = document.getElementById("msg-" + n);
      if (msg) {
        msg.classList.add("open");
        a.classList.add("open");
        msg.scrollIntoView({ block: "nearest" });
      }
    });
  });
})();
