// Ferry's dashboard: follows job progress on the page without a reload,
// over server-sent events (/ui/events), or by polling /ui/progress when
// the browser has no EventSource. It only fills in texts and <progress>
// values the server formatted: no inline script, no style attributes.
"use strict";
(function () {
  function apply(items) {
    items.forEach(function (it) {
      document.querySelectorAll('[data-job="' + CSS.escape(it.id) + '"]').forEach(function (el) {
        var bar = el.querySelector('[data-field="bar"]');
        if (bar) { bar.value = it.percent; bar.textContent = Math.round(it.percent) + "%"; }
        set(el, "status", it.status);
        var st = el.querySelector('[data-field="status"]');
        if (st) { st.className = "status s-" + it.status; }
        set(el, "stream", it.stream);
        set(el, "counts", it.counts);
        set(el, "bytes", it.bytes);
        set(el, "eta", it.eta);
      });
      document.querySelectorAll('[data-job-stream="' + CSS.escape(it.id) + '"]').forEach(function (el) {
        set(el, "stream", it.stream || "—");
        set(el, "counts", it.counts);
        set(el, "bytes", it.bytes);
      });
      (it.streams || []).forEach(function (st) {
        document.querySelectorAll('[data-job-streams="' + CSS.escape(it.id) + '"][data-stream="' + CSS.escape(st.name) + '"]').forEach(function (el) {
          set(el, "counts", st.counts);
          set(el, "state", st.state);
        });
      });
      document.querySelectorAll('[data-job-bytes="' + CSS.escape(it.id) + '"]').forEach(function (el) {
        if (it.bytes && el.textContent !== it.bytes) { el.textContent = it.bytes; }
      });
      document.querySelectorAll('[data-job-size="' + CSS.escape(it.id) + '"]').forEach(function (el) { el.textContent = it.size; });
      document.querySelectorAll('[data-job-duration="' + CSS.escape(it.id) + '"]').forEach(function (el) { el.textContent = it.duration; });
    });
  }
  function set(el, field, text) {
    var f = el.querySelector('[data-field="' + field + '"]');
    if (f && f.textContent !== text) { f.textContent = text; }
  }
  function poll() {
    fetch("/ui/progress", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { location.href = "/ui/login?expired=1"; return null; }
      return r.ok ? r.json() : null;
    }).then(function (items) { if (items) { apply(items); } }).catch(function () {});
  }
  if (!document.querySelector("[data-job]")) { return; }
  if (window.EventSource) {
    var es = new EventSource("/ui/events");
    es.addEventListener("progress", function (e) { apply(JSON.parse(e.data)); });
    es.addEventListener("signedout", function () { es.close(); location.href = "/ui/login?expired=1"; });
  } else {
    setInterval(poll, 3000);
  }
})();
