"use strict";

const MAX_LOG_ITEMS = 20;

function setStatus(element, text, ok) {
  element.textContent = text;
  element.classList.toggle("ok", ok === true);
  element.classList.toggle("bad", ok === false);
}

function appendLog(list, text) {
  const item = document.createElement("li");
  item.textContent = text;
  list.appendChild(item);
  while (list.children.length > MAX_LOG_ITEMS) {
    list.removeChild(list.firstChild);
  }
  list.scrollTop = list.scrollHeight;
}

function startEvents() {
  const status = document.getElementById("event-status");
  const log = document.getElementById("event-log");
  // URLs in scripts are relative to the page, so they work at / and under any proxy prefix
  // (rproxy rewrites URLs in HTML and CSS, not in JavaScript).
  const source = new EventSource("events");
  source.onopen = () => setStatus(status, "connected", true);
  source.onmessage = (event) => appendLog(log, event.data);
  source.onerror = () => {
    const retrying = source.readyState === EventSource.CONNECTING;
    setStatus(status, retrying ? "disconnected, retrying…" : "failed", false);
  };
}

function startWebSocket() {
  const status = document.getElementById("ws-status");
  const log = document.getElementById("ws-log");
  const form = document.getElementById("ws-form");
  const input = document.getElementById("ws-message");
  const send = document.getElementById("ws-send");
  const reconnect = document.getElementById("ws-reconnect");
  const url = new URL("ws", document.baseURI);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  document.getElementById("ws-url").textContent = url;
  let socket = null;

  function connect() {
    if (socket !== null) {
      socket.close();
    }
    let opened = false;
    setStatus(status, "connecting…", null);
    const current = new WebSocket(url);
    socket = current;
    current.onopen = () => {
      opened = true;
      send.disabled = false;
      setStatus(status, "connected", true);
    };
    current.onmessage = (event) => appendLog(log, "echo: " + event.data);
    current.onerror = () => setStatus(status, "failed: could not use " + url, false);
    current.onclose = (event) => {
      if (socket !== current) {
        return;
      }
      send.disabled = true;
      const text = opened
        ? "closed (code " + event.code + ")"
        : "failed: could not connect to " + url + " (code " + event.code + ")";
      setStatus(status, text, false);
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (socket !== null && socket.readyState === WebSocket.OPEN && input.value !== "") {
      socket.send(input.value);
      appendLog(log, "sent: " + input.value);
      input.value = "";
    }
  });
  reconnect.addEventListener("click", connect);
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  startEvents();
  startWebSocket();
});
