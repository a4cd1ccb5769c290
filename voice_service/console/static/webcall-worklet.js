// AudioWorklet processors of "Talk to this agent" (loaded by webcall.js with audioWorklet.addModule, from 'self').
// - "mic-capture": the microphone → 20 ms frames of 16 kHz PCM signed 16-bit (posted to the page, which sends them);
// - "agent-player": the agent's 16 kHz PCM frames → the speakers, with the protocol's marks (posted back once the
//   audio before them has played) and "clear" (drop everything not played yet: barge-in).
// Both resample linearly when the AudioContext does not run at 16 kHz (a browser may refuse that rate).
"use strict";

const WIRE_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

// Linear interpolation from one rate to another over a stream of blocks (keeps the fractional position and the last
// sample between blocks, so blocks join without clicks).
class Resampler {
  constructor(fromRate, toRate) {
    this.step = fromRate / toRate;
    this.pos = 0;
    this.last = 0;
  }

  process(input) {
    if (this.step === 1) { return input; }
    const out = [];
    let pos = this.pos;
    while (pos < input.length) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i === 0 ? this.last : input[i - 1];
      const b = input[i];
      out.push(a + (b - a) * frac);
      pos += this.step;
    }
    this.pos = pos - input.length;
    this.last = input.length ? input[input.length - 1] : this.last;
    return Float32Array.from(out);
  }
}

class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, WIRE_RATE);
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) { return true; }
    const mono = channels[0];
    const samples = this.resampler.process(mono);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === FRAME_SAMPLES) {
        const full = this.frame;
        this.port.postMessage(full.buffer, [full.buffer]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
    }
    return true;
  }
}

class AgentPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // Float32Array chunks (at the context's rate) and {mark: name} items, in order
    this.offset = 0; // samples of queue[0] already played
    this.resampler = new Resampler(WIRE_RATE, sampleRate);
    this.played = 0; // samples of agent audio played (at the context's rate)
    this.reported = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message.type === "audio") {
      const pcm = new Int16Array(message.buffer);
      const floats = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) { floats[i] = pcm[i] / 0x8000; }
      this.queue.push(this.resampler.process(floats));
    } else if (message.type === "mark") {
      this.queue.push({ mark: message.name });
    } else if (message.type === "clear") {
      // Marks dropped with the audio are never echoed: the service counts that audio as not heard.
      this.queue = [];
      this.offset = 0;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        this.port.postMessage({ type: "mark", name: head.mark });
        this.queue.shift();
        continue;
      }
      const n = Math.min(out.length - written, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    // A mark right after the last audio played in this block has played too.
    while (this.queue.length && this.queue[0].mark !== undefined) {
      this.port.postMessage({ type: "mark", name: this.queue.shift().mark });
    }
    out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) { outputs[0][c].set(out); }
    this.played += written;
    if (this.played - this.reported >= sampleRate / 10) { // tell the page about every 100 ms of audio played
      this.reported = this.played;
      this.port.postMessage({ type: "played", ms: Math.round(this.played * 1000 / sampleRate) });
    }
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
registerProcessor("agent-player", AgentPlayer);
