// The console's only hand-written script: loaded after htmx on every page (no inline script anywhere).
// - sends the session's CSRF token with every htmx request (forms also carry it in a hidden field);
// - reports the browser's time zone in a cookie, so the server shows times and "today" in it;
// - shows the message of a refused htmx request in the page's message area;
// - after a form comes back with errors, moves the focus to the error summary (keyboard and screen-reader users).
(function () {
  "use strict";

  function reportTimeZone() {
    var zone = "UTC";
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (e) {
      zone = "UTC";
    }
    var current = document.cookie.split("; ").find(function (c) { return c.indexOf("console_tz=") === 0; });
    var value = "console_tz=" + encodeURIComponent(zone);
    if (current !== value) {
      var secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = value + "; Path=/console; Max-Age=31536000; SameSite=Lax" + secure;
    }
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function showMessage(text) {
    var area = document.getElementById("messages");
    if (!area) { return; }
    var p = document.createElement("p");
    p.className = "notice notice-error";
    p.textContent = text;
    area.replaceChildren(p);
  }

  reportTimeZone();

  document.addEventListener("htmx:configRequest", function (event) {
    var token = csrfToken();
    if (token) { event.detail.headers["X-CSRF-Token"] = token; }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = (xhr && xhr.responseText) || "The server refused the request.";
    showMessage(text.length > 300 ? text.slice(0, 300) + "…" : text);
  });

  document.addEventListener("htmx:sendError", function () {
    showMessage("The console could not reach the server. Check your connection and try again.");
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    // Only a refused form (422) moves the focus: other swaps (live updates, added rows) leave it where it is.
    var xhr = event.detail && event.detail.xhr;
    if (!xhr || xhr.status !== 422) { return; }
    var summary = document.querySelector("[data-error-summary]");
    if (summary) { summary.focus(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.querySelector("[data-error-summary]");
    if (summary) { summary.focus(); }
    // "Remove" buttons of repeated rows (transfer targets): delete the row they sit in.
    document.body.addEventListener("click", function (event) {
      var button = event.target.closest("[data-remove-row]");
      if (!button) { return; }
      event.preventDefault();
      var row = button.closest("[data-row]");
      if (row) { row.remove(); }
    });
  });
})();
