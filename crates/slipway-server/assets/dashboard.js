// Follows a log stream into any element with data-stream (Server-Sent Events of JSON log
// lines), so logs and build output appear live. Without JavaScript the pages show what was
// written when they were loaded.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-stream]").forEach(function (target) {
    var state = document.getElementById("log-state");
    var events = new EventSource(target.dataset.stream);
    events.onopen = function () {
      target.dataset.live = "true";
      if (state) { state.textContent = "Live: new lines appear below as they come."; }
    };
    events.onmessage = function (event) {
      var line = JSON.parse(event.data);
      var owner = line.source === "app" ? "app" : "slipway";
      target.appendChild(document.createTextNode(
        line.at + " " + owner + "[" + line.process + "]: " + line.text + "\n"));
      target.scrollTop = target.scrollHeight;
    };
    events.onerror = function () {
      if (state) { state.textContent = "The live stream was interrupted; reload the page to resume."; }
    };
  });
});
