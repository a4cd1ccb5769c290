// A call's page: the recording player follows the transcript (click a time to hear that moment; the turn being
// heard is marked), and, while the call is live, the live panel: its transcript as it happens and listening in,
// over the listen WebSocket (GET /v1/calls/{id}/listen?token=…, the token from a console route under the session).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // --- the recording and the transcript ---

  function setUpPlayer() {
    var audio = document.getElementById("recording");
    var transcript = document.getElementById("transcript");
    if (!audio || !transcript) { return; }
    var turns = Array.prototype.slice.call(transcript.querySelectorAll("[data-start-ms]"));
    transcript.addEventListener("click", function (event) {
      var button = event.target.closest("[data-seek-ms]");
      if (!button) { return; }
      audio.currentTime = Number(button.getAttribute("data-seek-ms")) / 1000;
      var playing = audio.play();
      if (playing && playing.catch) { playing.catch(function () { /* the user may play it themselves */ }); }
    });
    audio.addEventListener("timeupdate", function () {
      var ms = audio.currentTime * 1000;
      turns.forEach(function (turn) {
        var on = ms >= Number(turn.getAttribute("data-start-ms")) && ms < Number(turn.getAttribute("data-end-ms"));
        turn.classList.toggle("turn-playing", on);
        if (on) { turn.setAttribute("aria-current", "true"); } else { turn.removeAttribute("aria-current"); }
      });
    });
  }

  // --- the live panel ---

  function LivePanel(root) {
    this.root = root;
    this.state = document.getElementById("live-state");
    this.list = document.getElementById("live-transcript");
    this.partial = document.getElementById("live-partial");
    this.button = document.getElementById("listen-button");
    this.audio = null;
    this.base = null;
    this.rate = 8000;
    this.listening = false;
    this.socket = null;
  }

  LivePanel.prototype.say = function (text) { this.state.textContent = text; };

  LivePanel.prototype.addTurn = function (role, text, atMs) {
    var li = document.createElement("li");
    li.className = "turn " + (role === "agent" ? "turn-agent" : "turn-caller");
    var head = document.createElement("div");
    head.className = "turn-head";
    var who = document.createElement("span");
    who.className = "speaker";
    who.textContent = role === "agent" ? "Agent" : "Caller";
    var when = document.createElement("span");
    when.className = "turn-time";
    var seconds = Math.max(0, Math.floor((atMs || 0) / 1000));
    when.textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    head.appendChild(who);
    head.appendChild(when);
    var p = document.createElement("p");
    p.className = "turn-text";
    p.textContent = text;
    li.appendChild(head);
    li.appendChild(p);
    this.list.appendChild(li);
  };

  LivePanel.prototype.onEvent = function (message) {
    switch (message.type) {
      case "start":
        this.rate = message.sample_rate || 8000;
        this.say("Connected: the transcript appears as people speak.");
        break;
      case "caller_text":
        this.partial.textContent = message.final ? "" : "Caller: " + message.text + "…";
        break;
      case "agent_text":
        this.partial.textContent = "Agent: " + message.text;
        break;
      case "transcript":
        this.partial.textContent = "";
        this.addTurn(message.role, message.text, message.start_ms);
        break;
      case "end":
        this.say("The call has ended (" + message.status + (message.end_reason ? ", " + message.end_reason : "") +
                 "). Reload the page for its record.");
        this.stopAudio();
        break;
      case "error":
        this.say("Live view unavailable: " + (message.detail || message.title || "error") + ".");
        break;
      default:
        break;
    }
  };

  LivePanel.prototype.onAudio = function (data) {
    if (!this.listening || !this.audio || data.byteLength < 7) { return; }
    var view = new DataView(data);
    var position = view.getUint32(1, true);
    var samples = Math.floor((data.byteLength - 5) / 2);
    var buffer = this.audio.createBuffer(1, samples, this.rate);
    var out = buffer.getChannelData(0);
    for (var i = 0; i < samples; i++) { out[i] = view.getInt16(5 + i * 2, true) / 32768; }
    var at = position / this.rate;
    var now = this.audio.currentTime;
    // Both channels share the call's timeline; a listener that fell behind starts again a little ahead of now.
    if (this.base === null || this.base + at < now) { this.base = now + 0.25 - at; }
    var source = this.audio.createBufferSource();
    source.buffer = buffer;
    source.connect(this.audio.destination);
    source.start(this.base + at);
    this.root.setAttribute("data-audio-chunks", String(Number(this.root.getAttribute("data-audio-chunks") || 0) + 1));
  };

  LivePanel.prototype.stopAudio = function () {
    this.listening = false;
    if (this.audio) { this.audio.close(); this.audio = null; }
    this.base = null;
    if (this.button) {
      this.button.setAttribute("aria-pressed", "false");
      this.button.textContent = "Listen in";
    }
  };

  LivePanel.prototype.toggleListening = function () {
    if (this.listening) { this.stopAudio(); return; }
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { this.say("This browser cannot play live audio."); return; }
    this.audio = new Context();
    this.listening = true;
    this.button.setAttribute("aria-pressed", "true");
    this.button.textContent = "Stop listening";
  };

  LivePanel.prototype.connect = function () {
    var panel = this;
    fetch(panel.root.getAttribute("data-listen-token-url"), {
      method: "POST", headers: {"X-CSRF-Token": csrfToken(), "Accept": "application/json"}, credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) { throw new Error(text || ("HTTP " + response.status)); });
      }
      return response.json();
    }).then(function (token) {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + location.host + token.listen_url);
      socket.binaryType = "arraybuffer";
      panel.socket = socket;
      socket.addEventListener("message", function (event) {
        if (typeof event.data === "string") { panel.onEvent(JSON.parse(event.data)); } else { panel.onAudio(event.data); }
      });
      socket.addEventListener("close", function (event) {
        if (event.code !== 1000) { panel.say("The live connection closed (" + (event.reason || event.code) + ")."); }
      });
    }).catch(function (error) {
      panel.say("Live view unavailable: " + error.message);
    });
  };

  document.addEventListener("DOMContentLoaded", function () {
    setUpPlayer();
    var root = document.getElementById("live-call");
    if (!root) { return; }
    var panel = new LivePanel(root);
    if (panel.button) { panel.button.addEventListener("click", function () { panel.toggleListening(); }); }
    panel.connect();
  });
})();
