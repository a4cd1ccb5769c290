// "Talk to this agent" on the agent page: a web call from this browser (the protocol: docs/web-calls.md).
// The microphone (getUserMedia) goes through the "mic-capture" AudioWorklet as 20 ms frames of 16 kHz PCM over the
// call's WebSocket; the agent's frames play through the "agent-player" worklet (webcall-worklet.js), which echoes
// each mark once the audio before it has played and drops what is queued on "clear" (the caller spoke: barge-in).
// The transcript shows both sides live. The page exposes what it played in its figures (data-figure attributes).
(function () {
  "use strict";

  var section = document.querySelector("[data-talk]");
  if (!section) { return; }
  var startButton = section.querySelector("[data-talk-start]");
  var stopButton = section.querySelector("[data-talk-stop]");
  var status = section.querySelector("[data-talk-status]");
  var transcript = section.querySelector("[data-talk-transcript]");
  var playedFigure = section.querySelector('[data-figure="agent-audio-ms"]');
  var micFigure = section.querySelector('[data-figure="mic-frames"]');
  var level = section.querySelector("[data-talk-level]");
  var callFigure = section.querySelector("[data-talk-call]");
  var liveArea = section.querySelector("[data-talk-live]");
  var REASONS = {
    caller_hung_up: "you hung up", agent_ended: "the agent ended the call", silence_timeout: "nobody spoke for a while",
    max_duration: "the call reached its maximum length", hangup_requested: "the call was ended from the console or API",
    shutdown: "the service is restarting", media_disconnected: "the connection dropped"
  };

  var call = null; // the live call's state, or null

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function setStatus(text, kind) {
    status.textContent = text;
    status.className = "talk-status" + (kind ? " " + kind : "");
  }

  // One <li> per turn; a partial turn is replaced as the words come, then fixed by its final.
  function line(role, text, final, interrupted) {
    var current = call && call.open[role];
    if (!current) {
      current = document.createElement("li");
      current.className = role;
      var who = document.createElement("span");
      who.className = "who";
      who.textContent = role === "agent" ? "Agent" : "You";
      current.appendChild(who);
      current.appendChild(document.createElement("span"));
      transcript.appendChild(current);
      if (call) { call.open[role] = current; }
    }
    current.lastChild.textContent = text;
    current.classList.toggle("partial", !final);
    if (final) {
      if (interrupted) {
        var cut = document.createElement("span");
        cut.className = "cut";
        cut.textContent = " (interrupted)";
        current.appendChild(cut);
      }
      if (call) { call.open[role] = null; }
    }
    transcript.scrollTop = transcript.scrollHeight;
  }

  function onEvent(event) {
    if (event.type === "mark") {
      call.player.port.postMessage({ type: "mark", name: event.name });
    } else if (event.type === "clear") {
      call.player.port.postMessage({ type: "clear" });
    } else if (event.type === "transcript") {
      line(event.role, event.text, event.final, event.interrupted);
    } else if (event.type === "started") {
      call.live = true;
      var link = document.createElement("a");
      link.href = "/console/calls/" + encodeURIComponent(event.call_id);
      link.textContent = event.call_id;
      callFigure.replaceChildren(link);
      setStatus("Connected: speak now.", "live");
    } else if (event.type === "end") {
      call.endReason = event.reason;
    }
  }

  function watchLevel(analyser) {
    var samples = new Float32Array(analyser.fftSize);
    var peak = 0;
    return window.setInterval(function () {
      analyser.getFloatTimeDomainData(samples);
      var sum = 0;
      for (var i = 0; i < samples.length; i++) { sum += samples[i] * samples[i]; }
      var rms = Math.sqrt(sum / samples.length);
      level.value = Math.min(1, rms * 4);
      if (rms > peak) {
        peak = rms;
        level.setAttribute("data-peak", peak.toFixed(4));
      }
    }, 100);
  }

  function finish(message, kind) {
    if (!call) { return; }
    var ending = call;
    call = null;
    window.clearInterval(ending.levelTimer);
    if (ending.stream) { ending.stream.getTracks().forEach(function (t) { t.stop(); }); }
    if (ending.socket && ending.socket.readyState <= 1) { ending.socket.close(1000); }
    if (ending.context) { ending.context.close(); }
    startButton.disabled = false;
    stopButton.disabled = true;
    setStatus(message, kind);
  }

  async function createCall() {
    var response = await fetch(section.getAttribute("data-create-url"), {
      method: "POST",
      credentials: "same-origin",
      // HX-Request: the console answers a refusal with a short message (and an expired session with HX-Redirect).
      headers: { "X-CSRF-Token": csrfToken(), "HX-Request": "true", "Accept": "application/json" }
    });
    var redirect = response.headers.get("HX-Redirect");
    if (redirect) { window.location.assign(redirect); throw new Error("Your session has ended: sign in again."); }
    if (!response.ok) { throw new Error(await response.text()); }
    return response.json();
  }

  async function start() {
    startButton.disabled = true;
    liveArea.hidden = false;
    transcript.replaceChildren();
    playedFigure.textContent = "0";
    micFigure.textContent = "0";
    setStatus("Asking for the microphone…");
    // Created in the click itself: browsers start audio only from a user's gesture.
    var context = new AudioContext({ sampleRate: 16000 });
    call = { context: context, open: { agent: null, caller: null }, live: false, endReason: null, frames: 0 };
    try {
      var stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true }
      });
      call.stream = stream;
      await context.audioWorklet.addModule(section.getAttribute("data-worklet-url"));
      var mic = new AudioWorkletNode(context, "mic-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
      var mute = context.createGain(); // the capture node joins the graph (so it is processed) without being heard
      mute.gain.value = 0;
      mic.connect(mute);
      mute.connect(context.destination);
      var player = new AudioWorkletNode(context, "agent-player", { numberOfInputs: 0, outputChannelCount: [1] });
      var analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      player.connect(analyser);
      analyser.connect(context.destination);
      context.createMediaStreamSource(stream).connect(mic);
      call.player = player;
      call.levelTimer = watchLevel(analyser);
      await context.resume();

      setStatus("Calling the agent…");
      var created = await createCall();
      if (!call) { return; }
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + window.location.host + created.socket_path);
      socket.binaryType = "arraybuffer";
      call.socket = socket;
      var current = call;

      player.port.onmessage = function (event) {
        var message = event.data;
        if (message.type === "mark" && socket.readyState === 1) {
          socket.send(JSON.stringify({ type: "mark", name: message.name }));
        } else if (message.type === "played") {
          playedFigure.textContent = String(message.ms);
        }
      };
      mic.port.onmessage = function (event) {
        if (current.live && socket.readyState === 1) {
          socket.send(event.data);
          current.frames += 1;
          if (current.frames % 25 === 0) { micFigure.textContent = String(current.frames); }
        }
      };
      socket.onopen = function () {
        socket.send(JSON.stringify({
          type: "start", token: created.token,
          format: { encoding: "pcm_s16le", sample_rate: 16000, channels: 1 }
        }));
      };
      socket.onmessage = function (event) {
        if (call !== current) { return; }
        if (typeof event.data === "string") {
          onEvent(JSON.parse(event.data));
        } else {
          player.port.postMessage({ type: "audio", buffer: event.data }, [event.data]);
        }
      };
      socket.onclose = function (event) {
        if (call !== current) { return; }
        if (current.endReason) {
          finish("Call ended: " + (REASONS[current.endReason] || current.endReason) + ".", "");
        } else {
          finish("The call could not continue" + (event.reason ? ": " + event.reason : ".") , "failed");
        }
      };
      stopButton.disabled = false;
    } catch (error) {
      var text = error && error.name === "NotAllowedError"
        ? "The microphone is blocked: allow it for this site to talk to the agent."
        : (error && error.message) || "The call could not start.";
      finish(text, "failed");
    }
  }

  function hangUp() {
    if (call && call.socket && call.socket.readyState === 1) {
      call.socket.send(JSON.stringify({ type: "stop" }));
      setStatus("Hanging up…");
    } else {
      finish("Not connected.", "");
    }
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", hangUp);
  window.addEventListener("pagehide", function () { finish("Not connected.", ""); });
})();
